"""Checks for notebook 08's exercises."""
from __future__ import annotations

from . import NOT_DONE, Feedback, graduated, not_done

VERDICTS = ("supported", "unsupported", "contradicted", "not checkable")


def check_mla_cache(answer, config: dict) -> Feedback:
    """Exercise 08.1: KV-cache bytes per token of DeepSeek-V3's MLA in bf16, all layers."""
    if not_done(answer):
        return NOT_DONE
    from ..anatomy import kv_cache_bytes_per_token

    truth = kv_cache_bytes_per_token(config)
    layers = config["num_hidden_layers"]
    if answer == truth:
        return Feedback(True, f"{truth:,} bytes: (512 latent + 64 rope key) x 61 layers x 2 bytes. "
                              f"Next: compare with attention='mha'.")
    if answer == truth // 2:
        return Feedback(False, "bf16 takes 2 bytes per value: multiply the values by 2.")
    if answer == truth // layers:
        return Feedback(False, "that is one layer; every layer keeps its own cache.")
    if answer == layers * config["kv_lora_rank"] * 2:
        return Feedback(False, "MLA also caches the decoupled rope key (qk_rope_head_dim values) beside the latent.")
    return graduated("08.1", answer, nudge="MLA caches a compressed latent per token and layer, not full keys and values.",
                     method="per layer MLA caches kv_lora_rank + qk_rope_head_dim values; times layers, times 2 bytes.")


def check_routed_share(answer, config: dict) -> Feedback:
    """Exercise 08.2: the fraction of DeepSeek-V3's total parameters in routed experts."""
    if not_done(answer):
        return NOT_DONE
    from ..anatomy import count_params

    count = count_params(config)
    truth = count.breakdown["routed experts"] / count.total
    if abs(float(answer) - truth) < 0.005:
        return Feedback(True, f"{truth:.1%}: almost the whole model is routed experts, of which a token uses 8 of 256. "
                              "Next: the same share for Mixtral (load_config('mistralai--Mixtral-8x7B-v0.1')).")
    if abs(float(answer) - truth * 100) < 0.5:
        return Feedback(False, "give a fraction between 0 and 1, not a percentage.")
    return graduated("08.2", answer, nudge="the parameter calculator breaks the total down by part.",
                     method="divide the 'routed experts' entry of count_params(config).breakdown by the total.")


def check_claim_verdict(answer, expected: str, why: str) -> Feedback:
    """Exercise 08.3: classify a claim as supported, unsupported, contradicted or not checkable."""
    if not_done(answer):
        return NOT_DONE
    if answer not in VERDICTS:
        return Feedback(False, f"answer with one of {VERDICTS}.")
    if answer == expected:
        return Feedback(True, f"{why}. Next: take a claim from today's news, find its primary source, classify it.")
    return graduated("08.3", answer, nudge="not quite: re-read what the cited source itself shows, not what the claim "
                                          "says it shows.",
                     method=f"the deciding evidence: {why.split(':')[0]}.")
