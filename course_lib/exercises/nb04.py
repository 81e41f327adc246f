"""Checks for notebook 04's exercises."""
from __future__ import annotations

import math

import torch

from . import NOT_DONE, Feedback, graduated, not_done


def check_switch_loss(my_switch_loss) -> Feedback:
    """Exercise 04.1: N * sum_i f_i * P_i with f over the T*k assignments."""
    if not_done(my_switch_loss):
        return NOT_DONE
    from ..balancing import switch_aux_loss

    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(40, 8, generator=generator).softmax(-1)
    indices = torch.randint(8, (40, 2), generator=generator)
    expected = switch_aux_loss(probs, indices, 8).item()
    got = float(my_switch_loss(probs, indices, 8))
    if math.isclose(got, expected, rel_tol=1e-5):
        uniform = torch.full((8, 8), 1 / 8), torch.arange(8)[:, None]
        return Feedback(True, f"and it gives {float(my_switch_loss(*uniform, 8)):.3f} on uniform routing. Next: "
                              "why does only P carry a gradient?")
    if math.isclose(got, expected / 8, rel_tol=1e-5):
        return Feedback(False, "multiply by the number of experts N, so that uniform routing gives exactly 1.")
    if math.isclose(got, expected * 2, rel_tol=1e-5):
        return Feedback(False, "with top-k there are T*k assignments: divide the counts by indices.numel(), not by T.")
    if math.isclose(got, expected * 40 * 2, rel_tol=1e-5):
        return Feedback(False, "f_i is a fraction of the assignments, not a count: divide by the number of assignments.")
    return graduated("04.1", my_switch_loss, nudge="the loss multiplies, for each expert, the share of assignments it got by the mean "
                                   "probability the router gave it.",
                     method="f_i is the share of all T*k assignments that went to expert i (count them), P_i the mean "
                            "router probability of expert i over the tokens; the loss is N times the sum over experts "
                            "of f_i * P_i.")


def check_bias_update(update_bias) -> Feedback:
    """Exercise 04.2: b_i + u * sign(mean load - load_i)."""
    if not_done(update_bias):
        return NOT_DONE
    bias, load = torch.zeros(4), torch.tensor([10, 2, 4, 4])
    got = update_bias(bias.clone(), load, 0.1)
    expected = 0.1 * torch.sign(load.float().mean() - load.float())
    if torch.allclose(got, expected):
        return Feedback(True, "overloaded experts lose u, underloaded ones gain u. Next: what happens when u is large?")
    if torch.allclose(got, -expected):
        return Feedback(False, "the sign is flipped: an overloaded expert (load above the mean) must get a *lower* bias.")
    if torch.allclose(got, 0.1 * (load.float().mean() - load.float())):
        return Feedback(False, "that is a proportional update; Wang et al.'s rule uses only the sign of the imbalance.")
    return graduated("04.2", update_bias, nudge="each expert's bias moves by the same small step u, up if it is underloaded, down "
                                   "if overloaded.",
                     method="compare each expert's load with the mean load; the bias moves by +u below the mean and -u "
                            "above it (torch.sign gives the direction; use float loads).")


def check_max_violation(answer, load) -> Feedback:
    """Exercise 04.3: MaxVio of a load vector."""
    if not_done(answer):
        return NOT_DONE
    load = torch.tensor(load, dtype=torch.float64)
    truth = float((load.max() - load.mean()) / load.mean())
    if math.isclose(float(answer), truth, rel_tol=1e-6):
        return Feedback(True, f"MaxVio = {truth:g}: the busiest expert has {truth + 1:g}x its fair share. "
                              "Next: what is MaxVio when one expert takes everything?")
    if math.isclose(float(answer), float(load.max() / load.mean()), rel_tol=1e-6):
        return Feedback(False, "subtract the mean first: MaxVio is 0 for a balanced load, not 1.")
    if math.isclose(float(answer), float((load.max() - load.min()) / load.mean()), rel_tol=1e-6):
        return Feedback(False, "MaxVio compares the maximum with the mean, not with the minimum.")
    return graduated("04.3", answer, nudge="MaxVio measures how far the busiest expert is above a perfectly even share.",
                     method="take the busiest expert's excess over the mean load, as a fraction of the mean load.")
