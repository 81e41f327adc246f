"""The course map: one list that the README, notebook 00 and the instructor guide all draw from.

The figure and the further-reading page drawn from it are written by ``python -m course_lib.maintainer.docs``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


@dataclass(frozen=True)
class Lesson:
    notebook: str
    title: str
    concepts: str
    study_minutes: int  # a learner's time: reading, running, exercises

    @property
    def available(self) -> bool:
        return (NOTEBOOK_DIR / self.notebook).is_file()


COURSE_MAP = (
    Lesson("00_start_here.ipynb", "Start here", "environment check, how the course works, the map", 10),
    Lesson("01_dense_transformer.ipynb", "The dense transformer",
           "bytes as tokens, causal attention, SwiGLU FFN, parameter and FLOP counts, training, sampling", 60),
    Lesson("02_from_ffn_to_experts.ipynb", "From one FFN to many experts",
           "MoE layer, total vs active parameters, dispatch, fine-grained and shared experts", 60),
    Lesson("03_routing.ipynb", "Routing", "softmax/sigmoid/sqrt-softplus gates, top-k, capacity, expert choice, "
           "hash and group-limited routing", 60),
    Lesson("04_load_balancing.ipynb", "Load balancing", "routing collapse, aux losses, z-loss, aux-loss-free bias", 75),
    Lesson("05_moe_vs_dense.ipynb", "Does MoE pay off?", "compute-matched comparison, expert specialisation", 60),
    Lesson("06_hardware_agnostic_compute.ipynb", "Hardware-agnostic compute",
           "devices, number formats, roofline, expert parallelism", 75),
    Lesson("07_open_weights_and_licensing.ipynb", "Open weights, safely", "safetensors, pickle risk, licences", 45),
    Lesson("08_deepseek_anatomy.ipynb", "Anatomy of DeepSeek-V3 and V4",
           "parameter calculator, mini DeepSeek model, claims vs evidence", 75),
)


def markdown_table(*, link_prefix: str = "notebooks/") -> str:
    """The map as a Markdown table; link_prefix is the notebooks' folder as seen from where it is shown."""
    rows = [f"| {f'[{l.notebook}]({link_prefix}{l.notebook})' if l.available else l.notebook + ' (in progress)'} "
            f"| {l.title} | {l.concepts} | {l.study_minutes} min |" for l in COURSE_MAP]
    return "| notebook | title | concepts | study time |\n|---|---|---|---:|\n" + "\n".join(rows)
