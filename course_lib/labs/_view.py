"""What every lab shares: outputs are widget values (HTML text, PNG images), not captured prints.

They live in the widget state, so they update in the browser and can be read back in tests without a kernel.
"""
from __future__ import annotations

import html
import io

import ipywidgets as widgets
import matplotlib.pyplot as plt

from ..data import decode


def text_view() -> widgets.HTML:
    return widgets.HTML()


def set_text(view: widgets.HTML, text: str) -> None:
    view.value = f"<pre style='white-space: pre-wrap; line-height: 1.3'>{html.escape(text)}</pre>"


def set_figure(view: widgets.Image, figure) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    view.value = buffer.getvalue()


def show_byte(token: int) -> str:
    return {10: "\\n", 32: "␣", 9: "\\t"}.get(token, decode([token]))
