"""Checks for notebook 06's exercises."""
from __future__ import annotations

import math

from . import NOT_DONE, Feedback, graduated, not_done


def check_decode_intensity(answer, *, batch: int, d_model: int, expert_hidden: int, bytes_per_weight: int) -> Feedback:
    """Exercise 06.1: FLOPs per byte of one expert serving ``batch`` tokens in a decode step (weights dominate bytes)."""
    if not_done(answer):
        return NOT_DONE
    flops = 2 * batch * 3 * d_model * expert_hidden
    truth = flops / (3 * d_model * expert_hidden * bytes_per_weight)
    if math.isclose(float(answer), truth, rel_tol=1e-3):
        return Feedback(True, f"{truth:g} FLOPs per byte: it grows with the batch, because the weights are read once "
                              "for all the tokens. Next: what batch reaches your chip's balance point?")
    if math.isclose(float(answer), truth / batch, rel_tol=1e-3):
        return Feedback(False, "that is one token; the expert's weights are read once for the whole batch.")
    if math.isclose(float(answer), truth * bytes_per_weight, rel_tol=1e-3):
        return Feedback(False, "divide by the bytes per weight (2 for bf16), not the number of weights.")
    return graduated("06.1", answer, nudge="intensity is FLOPs per byte moved: the weights are read once, and used once per "
                                   "token of the batch.",
                     method="FLOPs = 2 x batch x (3 x d x h); bytes = 3 x d x h x bytes per weight.")


def check_fp4_size(answer_gb, *, parameters: float) -> Feedback:
    """Exercise 06.2: storage of ``parameters`` weights in MXFP4 (4 bits each + one 8-bit scale per 32)."""
    if not_done(answer_gb):
        return NOT_DONE
    truth = parameters * (4 + 8 / 32) / 8 / 1e9
    if math.isclose(float(answer_gb), truth, rel_tol=0.01):
        return Feedback(True, f"{truth:.0f} GB: 4.25 bits per weight, against {parameters * 2 / 1e9:.0f} GB in bf16. "
                              "Next: how many 80 GB GPUs does each need, for the weights alone?")
    if math.isclose(float(answer_gb), parameters * 0.5 / 1e9, rel_tol=0.01):
        return Feedback(False, "close: add the shared 8-bit scale of each block of 32 (0.25 bit per weight).")
    if math.isclose(float(answer_gb), parameters * 4.25 / 1e9, rel_tol=0.01):
        return Feedback(False, "that is in gigabits: divide by 8 for bytes.")
    return graduated("06.2", answer_gb, nudge="count the bits of one weight, including its share of the block's scale.",
                     method="bits per weight = 4 + 8/32; bytes = parameters x bits / 8; report in GB (1e9 bytes).")


def check_training_days(answer, *, flops: float, peak_flops: float, utilisation: float, gpus: int) -> Feedback:
    """Exercise 06.3: wall-clock days to do ``flops`` on ``gpus`` chips at ``utilisation`` of ``peak_flops``."""
    if not_done(answer):
        return NOT_DONE
    truth = flops / (peak_flops * utilisation * gpus) / 86400
    if math.isclose(float(answer), truth, rel_tol=0.01):
        return Feedback(True, f"about {truth:.0f} days. Peak FLOPs are an upper bound; interconnect and memory decide "
                              "the real utilisation. Next: redo it with 50% utilisation.")
    if math.isclose(float(answer), truth * 24, rel_tol=0.01):
        return Feedback(False, "that is in hours: divide by 24.")
    if math.isclose(float(answer), truth * utilisation, rel_tol=0.01):
        return Feedback(False, "at less than 100% utilisation it takes *longer*: divide by the utilisation.")
    return graduated("06.3", answer, nudge="the cluster delivers only a fraction (the utilisation) of its peak FLOP/s.",
                     method="seconds = FLOPs / (peak x utilisation x chips); days = seconds / 86400.")
