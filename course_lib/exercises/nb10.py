"""Checks for notebook 10's exercises."""
from __future__ import annotations

import math

from ..serving import copy_order
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


def _plain_lru_hits(requests: list[list[int]], capacity: int) -> int:
    """LRU without the rule that a token's experts never evict each other (a common slip)."""
    return lru_hits([[e] for token in requests for e in token], capacity)


def _fifo_hits(requests: list[list[int]], capacity: int) -> int:
    resident: list[int] = []
    hits = 0
    for expert in (e for token in requests for e in token):
        if expert in resident:
            hits += 1
        else:
            if len(resident) >= capacity:
                resident.pop(0)
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
    if answer == _plain_lru_hits(requests, capacity) and answer != truth:
        return Feedback(False, "that is what LRU gets if the second expert of a token may evict the first: keep "
                               "the current token's experts, evict the least recent of the others.")
    if answer == _fifo_hits(requests, capacity) and answer != truth:
        return Feedback(False, "that evicts in order of arrival (FIFO): a hit must move the expert to the most "
                               "recent end, so a busy expert stays.")
    if answer in (lru_hits(requests, capacity + 1), lru_hits(requests, capacity - 1)):
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
    if math.isclose(float(answer), truth * 1e9 / 2**30, rel_tol=0.01):
        return Feedback(False, "that is in GiB (2^30 bytes); the question asks for GB (10^9 bytes).")
    if math.isclose(float(answer), truth * 1e9, rel_tol=0.01):
        return Feedback(False, "right number of bytes; divide by 10^9 for GB.")
    if math.isclose(float(answer), truth / layers, rel_tol=0.01):
        return Feedback(False, f"that is one layer; the cache holds experts in each of the {layers} MoE layers.")
    return graduated("10.2", answer, nudge="count one expert's weights first, then how many experts the cache holds.",
                     method="3 x d_model x expert_hidden weights per expert, times bytes per weight, times experts "
                            "per layer, times layers; divide by 1e9.")


def check_first_copies(answer, *, load: list[int], copies: int = 3) -> Feedback:
    """Exercise 10.3: where the first redundant copies go (experts numbered from 0)."""
    if not_done(answer):
        return NOT_DONE
    truth = copy_order(load, copies)
    answer = list(answer)
    if answer == truth:
        return Feedback(True, f"{truth}: after one copy, expert {truth[0]}'s load per copy is "
                              f"{load[truth[0]] / 2:g}, so the next copy can go to another expert or back to it. "
                              "Next: the load per device once the copies are packed.")
    busiest = sorted(range(len(load)), key=lambda e: -load[e])[:copies]
    if answer == busiest:
        return Feedback(False, "that copies the top experts once each; a copy halves an expert's load per copy, so "
                               "recompute the loads per copy after each choice.")
    if answer == [e + 1 for e in truth]:
        return Feedback(False, "experts are numbered from 0.")
    if any(a in load for a in answer):
        return Feedback(False, "answer with expert numbers (0 to 3), not loads.")
    return graduated("10.3", answer, nudge="each copy goes to the expert with the highest load per copy so far.",
                     method="start with one copy each; give the next copy to the highest load / copies, update, repeat.")
