"""Checks for notebook 02's exercises."""
from __future__ import annotations

import math

import torch

from . import NOT_DONE, Feedback, graduated, not_done


def check_route_top_k(route_top_k) -> Feedback:
    """Exercise 02.1: ``route_top_k(logits, k)`` -> (indices, weights), Mixtral-style: softmax over the k best
    logits (equivalently, top-k of the softmax renormalised to sum to 1)."""
    if not_done(route_top_k):
        return NOT_DONE
    logits = torch.tensor([[2.0, 0.5, 1.0, -1.0], [0.0, 3.0, 0.1, 2.9]])
    result = route_top_k(logits, 2)
    if not isinstance(result, tuple) or len(result) != 2:
        return Feedback(False, "return a pair (indices, weights), e.g. from torch.topk.")
    indices, weights = result
    best = logits.topk(2, dim=-1)
    if indices.shape != (2, 2) or weights.shape != (2, 2):
        return Feedback(False, f"expected (tokens, k) = (2, 2) shapes, got {tuple(indices.shape)} and {tuple(weights.shape)}; "
                               "did you take the top-k along the expert dimension (dim=-1)?")
    if not torch.equal(indices.sort(-1).values, best.indices.sort(-1).values):
        return Feedback(False, "wrong experts: take the k largest logits of each row (torch.topk(..., dim=-1)).")
    order = indices.argsort(-1)
    weights = weights.gather(1, order)
    expected = best.values.softmax(-1).gather(1, best.indices.argsort(-1))
    if torch.allclose(weights, expected, atol=1e-5):
        return Feedback(True, "the weights sum to 1 over the chosen experts. Next: compare with "
                              "RouterConfig(normalize=True) in course_lib.routing.")
    if torch.allclose(weights, logits.softmax(-1).gather(1, indices.gather(1, order)), atol=1e-5):
        return Feedback(False, "these are the softmax probabilities over all experts: they do not sum to 1 over the "
                               "k chosen. Renormalise them (divide by their sum), as Mixtral does.")
    if torch.allclose(weights, logits.gather(1, indices.gather(1, order)), atol=1e-5):
        return Feedback(False, "these are raw logits: turn the k chosen logits into weights with a softmax.")
    return graduated("02.1", route_top_k, nudge="the experts are right but not the weights: what should the k weights of a token "
                                   "add up to?",
                     method="softmax over the k chosen logits (not over all experts).")


def check_moe_params(total, active, *, d_model: int, n_experts: int, top_k: int, expert_hidden: int,
                     n_shared: int) -> Feedback:
    """Exercise 02.2: total and active parameters of one MoE layer, router included."""
    if not_done(total) or not_done(active):
        return NOT_DONE
    from ..moe import moe_cost

    cost = moe_cost(d_model=d_model, n_experts=n_experts, top_k=top_k, expert_hidden=expert_hidden, n_shared=n_shared)
    expert, router = 3 * d_model * expert_hidden, d_model * n_experts
    if (total, active) == (cost.total_params, cost.active_params):
        return Feedback(True, f"{total:,} stored, {active:,} used per token ({active / total:.0%}). "
                              "Next: move the calculator's sliders to the same layer and compare.")
    hints = []
    if total == cost.total_params - router or active == cost.active_params - router:
        hints.append("include the router (d_model x n_experts), which every token uses")
    if total == cost.total_params - n_shared * expert or active == cost.active_params - n_shared * expert:
        hints.append("include the shared experts: stored once, used by every token")
    if total == n_experts * 2 * d_model * expert_hidden + router or active == top_k * 2 * d_model * expert_hidden + router:
        hints.append("a SwiGLU expert has three matrices (gate, up, down)")
    if active == cost.total_params or total == cost.active_params:
        hints.append("total counts every expert; active only the top_k routed ones plus the shared ones")
    if hints:
        return Feedback(False, "; ".join(hints))
    return graduated("02.2", (total, active), nudge="count what is stored (every expert) and what one token uses (its top_k experts, the "
                                   "shared ones, the router) separately.",
                     method=f"one expert has 3·d·h = {expert:,} parameters; total = experts x that + shared + router, "
                            "active = top_k x that + shared + router.")


def check_combinations(answer, *, n_routed: int, top_k: int) -> Feedback:
    """Exercise 02.3: how many different sets of routed experts can one token use?"""
    if not_done(answer):
        return NOT_DONE
    truth = math.comb(n_routed, top_k)
    if answer == truth:
        return Feedback(True, f"C({n_routed}, {top_k}) = {truth:,}. Shared experts add no choice: every token uses them. "
                              "Next: how many combinations does Mixtral (8 experts, top-2) allow?")
    if answer == math.perm(n_routed, top_k):
        return Feedback(False, "that counts ordered choices; the order of the chosen experts does not matter "
                               "(their outputs are summed): count unordered sets, not ordered picks.")
    if answer == 2 ** n_routed:
        return Feedback(False, "that counts subsets of any size; a token uses exactly top_k experts.")
    if answer == n_routed ** top_k:
        return Feedback(False, "that counts ordered picks that may repeat an expert; a token's experts are distinct, "
                               "and their order does not matter.")
    return graduated("02.3", answer, nudge="a token picks top_k *distinct* routed experts and their order does not "
                                          "matter: how many such sets are there? (Shared experts add no choice.)",
                     method=f"the number of ways to choose {top_k} of {n_routed} without order: a binomial coefficient.")
