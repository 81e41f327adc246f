"""Counting real models exactly (issue 15): course_lib.anatomy against transformers' own model classes.

transformers is the oracle: each config is built on the meta device (no memory, about a second each) and its
parameters summed. The only difference allowed is what ParamCount.notes names: the routers' balance biases,
which the course counts as weights and transformers keeps as buffers.
"""
import pytest
import torch

from course_lib.anatomy import (CSA, HCA, SLIDING, count_params, flops_per_token, kv_cache_bytes,
                                kv_cache_bytes_per_token, load_config, v4_schedule)

transformers = pytest.importorskip("transformers")

V3, FLASH, PRO, V2_LITE = ("deepseek-ai--DeepSeek-V3", "deepseek-ai--DeepSeek-V4-Flash", "deepseek-ai--DeepSeek-V4-Pro",
                           "deepseek-ai--DeepSeek-V2-Lite")


def transformers_count(config: dict) -> int:
    """Parameters of transformers' causal-LM class for this config, built on the meta device."""
    hf_config = transformers.AutoConfig.for_model(**{k: v for k, v in config.items() if not k.startswith("_")})
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_config)
    return sum(p.numel() for p in model.parameters())


def balance_biases(config: dict) -> int:
    """The e_score_correction_bias values: one per routed expert on every MoE layer that is not hash-routed."""
    if config["model_type"] == "deepseek_v3":
        return (config["num_hidden_layers"] - config["first_k_dense_replace"]) * config["n_routed_experts"]
    if config["model_type"] == "deepseek_v4":
        return v4_schedule(config)[1].count("moe") * config["n_routed_experts"]
    return 0


def tiny_v4(**changes) -> dict:
    """A four-layer DeepSeek-V4 whose every size differs, so that a swapped dimension changes the count."""
    return {"model_type": "deepseek_v4", "vocab_size": 97, "hidden_size": 48, "num_hidden_layers": 4,
            "num_attention_heads": 6, "num_key_value_heads": 1, "head_dim": 16, "qk_rope_head_dim": 4,
            "q_lora_rank": 20, "o_groups": 3, "o_lora_rank": 10, "index_n_heads": 5, "index_head_dim": 12,
            "index_topk": 3, "sliding_window": 4, "n_routed_experts": 7, "n_shared_experts": 1,
            "num_experts_per_tok": 2, "moe_intermediate_size": 24, "hc_mult": 3, "num_hash_layers": 1,
            "compress_ratios": [0, 4, 128, 4, 0], "num_nextn_predict_layers": 1, **changes}


@pytest.mark.parametrize("name", [V3, FLASH, PRO, V2_LITE, "deepseek-v3-without-q-compression"])
def test_count_equals_transformers_less_the_noted_buffers(name):
    config = load_config(V3) if name.startswith("deepseek-v3-") else load_config(name)
    if name.startswith("deepseek-v3-"):
        config["q_lora_rank"] = None  # one plain query projection, as small DeepSeek configs have
    count = count_params(config)
    bias = balance_biases(config)
    assert count.total - bias == transformers_count(config)
    assert sum(count.breakdown.values()) == count.total
    if bias:  # the note states the difference and transformers' number
        assert any(f"{bias:,} values" in note and f"{count.total - bias:,}" in note for note in count.notes)


def test_measured_counts_are_pinned():
    """Measured with transformers 5.24 on the meta device: V3 671,026,404,352; V4-Flash 284,332,230,231."""
    assert count_params(load_config(V3)).total == 671_026_404_352 + 58 * 256
    assert count_params(load_config(FLASH)).total == 284_332_230_231 + 40 * 256  # 3 of 43 layers hash-routed


@pytest.mark.parametrize("changes", [
    {},  # legacy fields: compress_ratios, num_hash_layers
    {"compress_ratios": None, "layer_types": [HCA, CSA, SLIDING, CSA], "compress_rates": {CSA: 2, HCA: 8},
     "mlp_layer_types": ["hash_moe", "moe", "hash_moe", "moe"]},  # the fields transformers 5 writes
    {"compress_ratios": None, "num_hash_layers": None, "num_hidden_layers": 5},  # neither: transformers' defaults
])
def test_tiny_v4_schedules_count_exactly(changes):
    config = {k: v for k, v in tiny_v4(**changes).items() if v is not None}
    count = count_params(config)
    assert count.total - balance_biases(config) == transformers_count(config)
    assert count.mtp > 0 and count.active < count.total


def test_v4_schedule_reads_the_legacy_fields_as_transformers_does():
    kinds, mlp, rates = v4_schedule(load_config(FLASH))
    assert kinds[:4] == [SLIDING, SLIDING, CSA, HCA] and len(kinds) == 43  # the 44th ratio is the MTP layer's
    assert (kinds.count(CSA), kinds.count(HCA)) == (21, 20) and mlp[:4] == ["hash_moe"] * 3 + ["moe"]
    assert rates == {CSA: 4, HCA: 128}
    pro_kinds = v4_schedule(load_config(PRO))[0]
    assert pro_kinds[:3] == [HCA, HCA, CSA] and (pro_kinds.count(CSA), pro_kinds.count(HCA)) == (30, 31)


def test_published_totals_and_what_active_leaves_out():
    """Published: V4-Flash 284B / 13B, V4-Pro 1.6T / 49B, V2-Lite 15.7B / 2.4B, V3 671B / 37B.

    The totals agree to the digits given. The course's active count includes the input embedding; DeepSeek's
    published active figures agree (within 2.5%) only without it, while Mixtral's and Qwen3's include it.
    """
    for name, total, active in [(FLASH, 284e9, 13e9), (PRO, 1.6e12, 49e9), (V2_LITE, 15.7e9, 2.4e9), (V3, 671e9, 37e9)]:
        config, count = load_config(name), count_params(load_config(name))
        assert abs(count.total / total - 1) < 0.02  # 1.6T has two significant digits: 1.573T
        embedding = config["vocab_size"] * config["hidden_size"]
        assert abs((count.active - embedding) / active - 1) < 0.025


def test_kv_cache_bytes_by_hand():
    # three layers (sliding, CSA every 4, HCA every 128), head_dim 8, indexer keys 4 wide, window 4, one byte each
    config = {"model_type": "deepseek_v4", "num_hidden_layers": 3, "compress_ratios": [0, 4, 128],
              "head_dim": 8, "index_head_dim": 4, "sliding_window": 4}
    assert kv_cache_bytes(config, context=10, bytes_per_value=1) == 3 * 4 * 8 + 2 * (8 + 4)
    assert kv_cache_bytes(config, context=256, bytes_per_value=2) == 2 * (3 * 4 * 8 + 64 * (8 + 4) + 2 * 8)
    assert kv_cache_bytes(config, context=3) == 2 * 3 * 3 * 8  # shorter than the window: no compressed entry yet
    with pytest.raises(ValueError, match="depends on the context"):
        kv_cache_bytes_per_token(config)
    mixtral = load_config("mistralai--Mixtral-8x7B-v0.1")  # GQA: the same bytes for every token
    assert kv_cache_bytes(mixtral, context=1000) == 1000 * 32 * 2 * 8 * 128 * 2


def test_v4_flash_cache_at_a_million_tokens_is_a_small_fraction_of_v3s():
    context = 2**20
    flash, v3 = kv_cache_bytes(load_config(FLASH), context=context), kv_cache_bytes(load_config(V3), context=context)
    # 21 CSA layers: an entry per 4 tokens of 512 + 128 values; 20 HCA: per 128 tokens, 512; all 43: a 128-token window
    assert flash == 2 * (21 * context // 4 * 640 + 20 * context // 128 * 512 + 43 * 128 * 512)
    assert v3 == 2 * context * 61 * 576
    assert flash < v3 / 10
    assert kv_cache_bytes(load_config(PRO), context=context) < v3 / 5


def test_unknown_model_types_name_the_supported_ones():
    with pytest.raises(ValueError, match="unknown model_type 'llama'; supported: deepseek_v2, deepseek_v3, "
                                         "deepseek_v4, mixtral, qwen3_moe"):
        count_params({"model_type": "llama"})
    with pytest.raises(ValueError, match="unknown model_type None"):
        kv_cache_bytes({}, context=1)


def test_v2_lite_and_v4_flops_are_finite_and_grow_with_context():
    for name in (V2_LITE, FLASH):
        config = load_config(name)
        assert 2 * count_params(config).active * 0.9 < flops_per_token(config) < flops_per_token(config, context=2**20)
