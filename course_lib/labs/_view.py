"""What every lab shares: outputs are widget values (HTML text, PNG images), not captured prints.

They live in the widget state, so they update in the browser and can be read back in tests without a kernel.
"""
from __future__ import annotations

import html
import io
import struct

import ipywidgets as widgets
import matplotlib.pyplot as plt

from ..data import decode


def text_view() -> widgets.HTML:
    return widgets.HTML()


def set_text(view: widgets.HTML, text: str) -> None:
    view.value = f"<pre style='white-space: pre-wrap; line-height: 1.3'>{html.escape(text)}</pre>"


def describe(control: widgets.Widget, tooltip: str) -> widgets.Widget:
    """A label that is never cut off (as wide as its text) and a real tooltip: labs must read at 1366x768."""
    if isinstance(control, widgets.Checkbox):
        control.indent = False  # the label follows the box instead of sitting in a fixed-width column
        control.layout.width = "auto"
    else:
        control.style.description_width = "initial"
    control.tooltip = tooltip
    return control


def figure_view(placeholder: str = "") -> widgets.Image:
    """An image widget for figures; with a placeholder text drawn until the first real figure (no broken image)."""
    view = widgets.Image(format="png")
    if placeholder:
        figure = plt.figure(figsize=(6, 0.6))
        figure.text(0.5, 0.5, placeholder, ha="center", va="center", color="#555555")
        set_figure(view, figure)
    return view


def set_figure(view: widgets.Image, figure) -> None:
    """Show a figure at exactly its pixel size: the browser neither stretches nor blurs it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    png = buffer.getvalue()
    width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
    view.value = png
    view.layout.width, view.layout.height = f"{width}px", f"{height}px"


def show_byte(token: int) -> str:
    return {10: "\\n", 32: "␣", 9: "\\t"}.get(token, decode([token]))
