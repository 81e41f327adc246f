"""The course map: one list that the README, notebook 00 and the instructor guide all draw from.

The figure and the further-reading page drawn from it are written by ``python -m course_lib.maintainer.docs``.
Each lesson also carries its measured running time on the reference machine, which ``course_lib.doctor`` scales
to the learner's machine with a short training benchmark (``running_time_estimate``).
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
    run_seconds: int  # computing time, cold (empty cache), on the reference machine: see REFERENCE_MACHINE
    workshop_seconds: int  # the same in workshop mode (COURSE_WORKSHOP=1)

    @property
    def available(self) -> bool:
        return (NOTEBOOK_DIR / self.notebook).is_file()


COURSE_MAP = (
    Lesson("00_start_here.ipynb", "Start here", "environment check, how the course works, the map", 10, 11, 11),
    Lesson("01_dense_transformer.ipynb", "The dense transformer",
           "bytes as tokens, causal attention, SwiGLU FFN, parameter and FLOP counts, training, sampling", 60, 84, 41),
    Lesson("02_from_ffn_to_experts.ipynb", "From one FFN to many experts",
           "MoE layer, total vs active parameters, dispatch, fine-grained and shared experts", 60, 61, 29),
    Lesson("03_routing.ipynb", "Routing", "softmax/sigmoid/sqrt-softplus gates, top-k, capacity, expert choice, "
           "hash and group-limited routing", 60, 7, 7),
    Lesson("04_load_balancing.ipynb", "Load balancing", "routing collapse, aux losses, z-loss, aux-loss-free bias", 75, 81, 81),
    Lesson("05_moe_vs_dense.ipynb", "Does MoE pay off?", "compute-matched comparison, expert specialisation", 60, 99, 99),
    Lesson("06_hardware_agnostic_compute.ipynb", "Hardware-agnostic compute",
           "devices, number formats, roofline, expert parallelism, the Ascend/CANN stack", 75, 44, 44),
    Lesson("07_open_weights_and_licensing.ipynb", "Open weights, safely", "safetensors, pickle risk, licences", 45, 5, 5),
    Lesson("08_deepseek_anatomy.ipynb", "Anatomy of DeepSeek-V3 and V4",
           "parameter calculator, mini DeepSeek model, claims vs evidence", 75, 69, 69),
    Lesson("09_memorisation_vs_reasoning.ipynb", "Where experts pay: memorisation vs reasoning",
           "experts at fixed active compute, facts vs held-out sums, a paper's claim over seeds", 45, 67, 67),
    Lesson("10_serving_on_a_memory_budget.ipynb", "Serving an MoE on a memory budget",
           "routing traces, expert caches (LRU, LFU, Belady), memory-mapped experts, redundant experts", 45, 8, 8),
    Lesson("11_deepseek_v4_in_miniature.ipynb", "DeepSeek-V4 in miniature",
           "KV cache at 1M tokens, MLA, CSA/HCA and the lightning indexer, mHC, loading real-format weights, "
           "equality with transformers", 75, 51, 51),
)


def markdown_table(*, link_prefix: str = "notebooks/") -> str:
    """The map as a Markdown table; link_prefix is the notebooks' folder as seen from where it is shown."""
    rows = [f"| {f'[{l.notebook}]({link_prefix}{l.notebook})' if l.available else l.notebook + ' (in progress)'} "
            f"| {l.title} | {l.concepts} | {l.study_minutes} min |" for l in COURSE_MAP]
    return "| notebook | title | concepts | study time |\n|---|---|---|---:|\n" + "\n".join(rows)


# ---- running time on the learner's machine ----------------------------------------------------------------------

REFERENCE_MACHINE = "2-core AMD EPYC, PyTorch's AVX-512 kernels, about 190 GFLOP/s fp32 matmul (2026-11-30)"
REFERENCE_STEP_SECONDS = 0.1  # the doctor's training benchmark (course_lib.doctor.training_step_seconds) there
WORKSHOP_ABOVE_MINUTES = 20  # the one threshold: above this estimated cold total, use workshop mode


def running_time_estimate(step_seconds: float, *, workshop: bool = False) -> dict[str, float]:
    """Estimated cold running time of each notebook, in seconds, on a machine whose training benchmark step takes
    ``step_seconds``: the reference times scaled by the ratio of benchmark steps. Training dominates the heavy
    notebooks, so the ratio carries over; for the light ones (a few seconds) it hardly matters."""
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds}")
    scale = step_seconds / REFERENCE_STEP_SECONDS
    return {lesson.notebook: (lesson.workshop_seconds if workshop else lesson.run_seconds) * scale
            for lesson in COURSE_MAP}


def workshop_recommended(step_seconds: float) -> bool:
    return sum(running_time_estimate(step_seconds).values()) > WORKSHOP_ABOVE_MINUTES * 60
