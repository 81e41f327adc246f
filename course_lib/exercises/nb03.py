"""Checks for notebook 03's exercises."""
from __future__ import annotations

import math

import torch

from . import NOT_DONE, Feedback, graduated, not_done


def check_capacity(answer, *, tokens: int, n_experts: int, top_k: int, capacity_factor: float) -> Feedback:
    """Exercise 03.1: how many token-expert assignments may one expert take?"""
    if not_done(answer):
        return NOT_DONE
    truth = math.ceil(capacity_factor * tokens * top_k / n_experts)
    if answer == truth:
        return Feedback(True, f"ceil({capacity_factor} x {tokens} x {top_k} / {n_experts}) = {truth}. "
                              "Next: what capacity factor would make dropping impossible?")
    if answer == math.ceil(capacity_factor * tokens / n_experts):
        return Feedback(False, "with top-k routing there are tokens x k assignments to share out, not tokens: multiply by k.")
    if answer == capacity_factor * tokens * top_k / n_experts or answer == math.floor(capacity_factor * tokens * top_k / n_experts):
        return Feedback(False, "round up: a capacity is a whole number of slots, and rounding down drops more than intended.")
    return graduated("03.1", answer, nudge="a capacity shares out every token-expert assignment equally, with some slack.",
                     method="capacity = ceil(capacity_factor x tokens x top_k / n_experts).")


def check_v3_weights(v3_weights) -> Feedback:
    """Exercise 03.2: ``v3_weights(logits, k, scaling)`` -> (indices, weights) with DeepSeek-V3's sigmoid gate."""
    if not_done(v3_weights):
        return NOT_DONE
    logits = torch.tensor([[2.0, -1.0, 0.5, 1.5, 0.0, -0.5], [0.1, 0.2, 3.0, -2.0, 1.0, 0.9]])
    indices, weights = v3_weights(logits, 3, 2.5)
    scores = torch.sigmoid(logits)
    expected_idx = scores.topk(3, dim=-1).indices
    if not torch.equal(indices.sort(-1).values, expected_idx.sort(-1).values):
        return Feedback(False, "wrong experts: pick the 3 largest sigmoid scores (the same as the 3 largest logits).")
    order = indices.argsort(-1)
    weights, indices = weights.gather(1, order), indices.gather(1, order)
    chosen = scores.gather(1, indices)
    if torch.allclose(weights, 2.5 * chosen / chosen.sum(-1, keepdim=True), atol=1e-5):
        return Feedback(True, "normalised over the chosen experts, then scaled: each row sums to 2.5. "
                              "Next: set normalize=False and see what the sigmoid scores alone sum to.")
    if torch.allclose(weights, chosen / chosen.sum(-1, keepdim=True), atol=1e-5):
        return Feedback(False, "normalised correctly; now multiply by the routed scaling factor.")
    if torch.allclose(weights, 2.5 * chosen, atol=1e-5):
        return Feedback(False, "sigmoid scores do not sum to 1: divide the chosen ones by their sum before scaling.")
    if torch.allclose(weights, 2.5 * chosen / scores.sum(-1, keepdim=True), atol=1e-5):
        return Feedback(False, "normalise over the k chosen experts only, not over all experts.")
    if torch.allclose(weights, 2.5 * logits.gather(1, indices).softmax(-1), atol=1e-5):
        return Feedback(False, "that is a softmax over the chosen logits; V3 uses sigmoid scores, normalised by their sum.")
    return graduated("03.2", v3_weights, nudge="V3's weights come from sigmoid scores, normalised, then scaled.",
                     method="weights = scaling x s_chosen / sum(s_chosen), with s = sigmoid(logits).")


def check_dropped_fraction(answer, *, router, layer_input) -> Feedback:
    """Exercise 03.3: the fraction of token-expert assignments dropped by ``router`` on ``layer_input``."""
    if not_done(answer):
        return NOT_DONE
    with torch.no_grad():
        truth = router(layer_input).dropped_fraction()
    if math.isclose(float(answer), truth, abs_tol=1e-4):
        return Feedback(True, f"{truth:.1%} of assignments dropped. Those tokens pass through the residual only. "
                              "Next: rerun with capacity_factor=1.25 and 2.0.")
    if math.isclose(float(answer), 1 - truth, abs_tol=1e-4):
        return Feedback(False, "that is the kept fraction; the question asks for the dropped one.")
    if float(answer) > 1:
        return Feedback(False, "give a fraction between 0 and 1, not a count or a percentage.")
    return graduated("03.3", answer, nudge="the router's decision says which assignments were kept under the capacity.",
                     method="route the layer input, then use Routing.kept (or Routing.dropped_fraction()).")
