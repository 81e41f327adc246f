"""Checks for notebook 10's exercises."""
from __future__ import annotations

import math

from . import NOT_DONE, Feedback, graduated, not_done


def lru_hits(requests: list[list[int]], capacity: int) -> int:
    """Hits of an LRU cache of ``capacity`` experts on one layer's requests (one list of experts per token).

    A token's experts are requested together: making room for one never evicts another the same token needs."""
    resident: list[int] = []  # least recent first
    hits = 0
    for experts in requests:
        for expert in experts:
            if expert in resident:
                hits += 1
                resident.remove(expert)
            elif len(resident) >= capacity:
                resident.remove(next(e for e in resident if e not in experts))
            resident.append(expert)
    return hits


def check_lru_hits(answer, *, requests: list[list[int]], capacity: int) -> Feedback:
    """Exercise 10.1: hits of an LRU cache on a short trace, by hand."""
    if not_done(answer):
        return NOT_DONE
    truth = lru_hits(requests, capacity)
    total = sum(len(r) for r in requests)
    if answer == truth:
        return Feedback(True, f"{truth} hits of {total} requests: a hit rate of {truth / total:.0%}. Next: how many "
                              f"would Belady's rule get? Try `simulate(Trace(...), capacity={capacity}, policy='belady')`.")
    if answer == total - truth:
        return Feedback(False, "that is the number of misses; count the requests found in the cache.")
    if answer == lru_hits(requests, capacity + 1) or answer == lru_hits(requests, capacity - 1):
        return Feedback(False, f"close: that is what a cache of another size would get. Keep exactly {capacity} experts.")
    return graduated("10.1", answer, nudge="go request by request, keeping the cache's experts in order of last use.",
                     method=f"on a miss with {capacity} experts resident, drop the one used longest ago that the "
                            "current token does not need; a hit moves the expert to the most recent end.")


def check_cache_bytes(answer, *, experts_per_layer: int, layers: int, d_model: int, expert_hidden: int,
                      bytes_per_weight: float) -> Feedback:
    """Exercise 10.2: fast memory for a cache of N experts per layer of a real model, in GB."""
    if not_done(answer):
        return NOT_DONE
    per_expert = 3 * d_model * expert_hidden * bytes_per_weight
    truth = experts_per_layer * layers * per_expert / 1e9
    if math.isclose(float(answer), truth, rel_tol=0.01):
        return Feedback(True, f"about {truth:.0f} GB ({per_expert / 1e6:.0f} MB per expert). Next: what fraction of "
                              "all routed-expert bytes is that?")
    if math.isclose(float(answer), truth * 2 / 3, rel_tol=0.01):
        return Feedback(False, "a SwiGLU expert has three matrices: gate, up and down.")
    if math.isclose(float(answer), truth / bytes_per_weight, rel_tol=0.01) and bytes_per_weight != 1:
        return Feedback(False, "that counts weights; multiply by the bytes per weight.")
    return graduated("10.2", answer, nudge="count one expert's weights first, then how many experts the cache holds.",
                     method="3 x d_model x expert_hidden weights per expert, times bytes per weight, times experts "
                            "per layer, times layers; divide by 1e9.")


def check_first_copy(answer, *, load: list[int]) -> Feedback:
    """Exercise 10.3: which expert gets the first redundant copy?"""
    if not_done(answer):
        return NOT_DONE
    truth = max(range(len(load)), key=lambda e: load[e])
    if answer == truth:
        return Feedback(True, f"expert {truth}: with two copies each takes half of its {load[truth]} tokens. Next: "
                              "which gets the second copy?")
    if answer == min(range(len(load)), key=lambda e: load[e]):
        return Feedback(False, "that is the idlest expert; a copy is meant to share the busiest one's work.")
    return graduated("10.3", answer, nudge="a copy splits one expert's tokens in two: whose split helps the busiest device most?",
                     method="give the copy to the expert with the highest load per copy (each has one copy so far).")
