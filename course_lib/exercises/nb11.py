"""Checks for notebook 11's exercises."""
from __future__ import annotations

import math

import torch

from ..v4_attention import finished_entries
from . import NOT_DONE, Feedback, graduated, not_done


def check_mla_cache_bytes(answer, *, layers: int, kv_lora_rank: int, rope_dim: int, heads: int, nope_dim: int,
                          v_dim: int, bytes_per_value: int = 2) -> Feedback:
    """Exercise 11.1: KV-cache bytes one token adds to DeepSeek-V3, all layers, in BF16."""
    if not_done(answer):
        return NOT_DONE
    truth = layers * (kv_lora_rank + rope_dim) * bytes_per_value
    answer = float(answer)
    if answer == truth:
        return Feedback(True, f"{truth:,} bytes: about {truth * 2**20 / 2**30:.0f} GiB for a million tokens. Next: "
                              "what would plain multi-head attention with the same heads store?")
    mha = layers * heads * (nope_dim + rope_dim + v_dim) * bytes_per_value
    if answer == mha:
        return Feedback(False, "that is what plain multi-head attention would cache (every head's key and value); "
                               "MLA caches only the latent and the one shared RoPE key.")
    if answer == 2 * truth:
        return Feedback(False, "the latent is cached once: keys and values are both rebuilt from it, so it is not "
                               "stored twice as in plain attention.")
    if answer == truth / layers:
        return Feedback(False, f"that is one layer; every one of the {layers} layers caches its own latent.")
    if answer == truth / bytes_per_value:
        return Feedback(False, "that counts values; BF16 takes 2 bytes each.")
    if answer == layers * kv_lora_rank * bytes_per_value:
        return Feedback(False, "the decoupled RoPE key is cached too: position cannot be folded into the latent.")
    return graduated("11.1", answer, nudge="what does one layer keep per token: which two pieces?",
                     method="(kv_lora_rank + qk_rope_head_dim) values per layer, times layers, times 2 bytes.")


def check_visible_entries(answer, *, positions: tuple[int, ...], rate: int) -> Feedback:
    """Exercise 11.2: how many compressed HCA entries each query (positions from 0) may attend to."""
    if not_done(answer):
        return NOT_DONE
    try:
        answer = [int(a) for a in answer]
    except (TypeError, ValueError):
        return Feedback(False, f"answer with one count per position, e.g. [a, b] for positions {list(positions)}.")
    visible = finished_entries(max(positions) + 1, max(positions) // rate + 2, rate, torch.device("cpu"))
    truth = [int(visible[p].sum()) for p in positions]
    if answer == truth:
        return Feedback(True, f"{truth}: entry t pools tokens {rate}t to {rate}t + {rate - 1} and exists once the "
                              "query has seen all of them; the sliding window covers the rest. Next: which entries "
                              "would a CSA layer with rate 4 offer the indexer at the same positions?")
    if answer == [p // rate for p in positions]:
        return Feedback(False, "off by one at the end of a window: the query at position t has seen token t itself, "
                               "so count the windows that end at or before it, (t + 1) // rate. (The V4 report's "
                               "formula reads s < floor(t/m); the released code and transformers use (t + 1) // m, "
                               "as the course does.)")
    if answer == [math.ceil((p + 1) / rate) for p in positions]:
        return Feedback(False, "that counts the unfinished last window too: its entry does not exist yet (it would "
                               "leak tokens the query must not see).")
    return graduated("11.2", answer, nudge="entry t exists once all of its window's tokens have been seen.",
                     method="positions start at 0: the query at t has seen t + 1 tokens; count complete windows "
                            "of rate tokens among them, for each position.")


def sinkhorn_step(matrix: list[list[float]]) -> torch.Tensor:
    """One Sinkhorn-Knopp step as exercise 11.3 defines it: normalise the columns, then the rows. (``mhc.sinkhorn``
    starts from a row softmax and ends on the columns; the limit is the same doubly-stochastic matrix.)"""
    m = torch.tensor(matrix, dtype=torch.float64)
    m = m / m.sum(0, keepdim=True)
    return m / m.sum(1, keepdim=True)


def check_sinkhorn_step(answer, *, matrix: list[list[float]]) -> Feedback:
    """Exercise 11.3: one Sinkhorn step on a small positive matrix."""
    if not_done(answer):
        return NOT_DONE
    try:
        given = torch.as_tensor(answer, dtype=torch.float64)
    except (TypeError, ValueError):
        return Feedback(False, "answer with a list of rows, e.g. [[a, b], [c, d]].")
    m = torch.tensor(matrix, dtype=torch.float64)
    if given.shape != m.shape:
        return Feedback(False, f"the answer should have the matrix's shape {tuple(m.shape)}.")
    truth = sinkhorn_step(matrix)
    if torch.allclose(given, truth, atol=1e-3):
        return Feedback(True, f"rows now sum to 1 and columns to {truth.sum(0).tolist()}: closer to 1 than "
                              "before. Repeating the step converges to a doubly-stochastic matrix. Next: run "
                              "`sinkhorn(torch.tensor(matrix).log(), iters=20)` and check both sums.")
    rows_first = m / m.sum(1, keepdim=True)
    rows_first = rows_first / rows_first.sum(0, keepdim=True)
    if torch.allclose(given, rows_first, atol=1e-3):
        return Feedback(False, "that normalises the rows first; the step here does the columns first, then the rows.")
    if torch.allclose(given, m / m.sum(0, keepdim=True), atol=1e-3):
        return Feedback(False, "that is half a step: after the columns, normalise the rows too.")
    return graduated("11.3", answer, nudge="divide each column by its sum, then each row of the result by its sum.",
                     method="column sums of the matrix first; divide; then the row sums of that; divide again.")
