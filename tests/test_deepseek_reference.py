"""The course's mini DeepSeek-V3 and V4 against transformers' implementations, and the checkpoint loader."""
import json
import shutil

import pytest
import torch
from hypothesis import given, strategies as st

from course_lib.config import DeepSeekConfig
from course_lib.deepseek import DeepSeekModel
from course_lib.hf_format import CheckpointError, config_from_hf, load_pretrained
from course_lib.mhc import sinkhorn
from course_lib.mla import MultiHeadLatentAttention
from course_lib.reference import TINY_CONFIGS, compare, write_reference_checkpoint

pytest.importorskip("transformers")
TOKENS = torch.randint(0, 64, (2, 40), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(folder, transformers model) per model type, plus a V3 without query compression (q_lora_rank null)."""
    root = tmp_path_factory.mktemp("checkpoints")
    made = {name: (root / name, write_reference_checkpoint(root / name, name)) for name in TINY_CONFIGS}
    made["v3_plain_queries"] = (root / "v3q", write_reference_checkpoint(root / "v3q", "deepseek_v3", q_lora_rank=None))
    return made


@pytest.mark.parametrize("name", ["deepseek_v3", "deepseek_v4", "v3_plain_queries"])
def test_same_logits_and_expert_choices_as_transformers(checkpoints, name):
    folder, reference = checkpoints[name]
    result = compare(load_pretrained(folder), reference, TOKENS)
    assert result.max_abs_difference <= 1e-5 and result.expert_choices_equal, result
    assert result.moe_layers == (4 if name == "deepseek_v4" else 2)


@pytest.mark.parametrize("sabotage", ["no indexer", "no clamp", "no sinkhorn", "no sinks", "no hash table"])
def test_the_comparison_sees_each_v4_part(checkpoints, sabotage):
    """Each V4 part matters on these weights: without it the logits move far beyond the tolerance."""
    folder, reference = checkpoints["deepseek_v4"]
    model = load_pretrained(folder)
    with torch.no_grad():
        if sabotage == "no indexer":  # CSA then attends to every finished entry
            model.blocks[1].attn.indexer, model.blocks[3].attn.indexer = None, None
        elif sabotage == "no clamp":
            for moe in model.moe_layers():
                moe.swiglu_limit = moe.shared.limit = None
        elif sabotage == "no sinkhorn":
            for block in model.blocks:
                block.attn_hc.iters = block.ffn_hc.iters = 1
        elif sabotage == "no sinks":
            for block in model.blocks:
                block.attn.sinks.fill_(-1e4)
        else:
            model.blocks[0].ffn.router.token_to_experts.copy_(model.blocks[0].ffn.router.token_to_experts.roll(1, 0))
    assert compare(model, reference, TOKENS).max_abs_difference > 1e-3


@given(st.integers(1, 4), st.sampled_from([None, 8]), st.integers(2, 12), st.integers(1, 3), st.integers(0, 1000))
def test_absorbed_mla_equals_plain_mla(heads, q_lora_rank, kv_lora_rank, rope_pairs, seed):
    config = DeepSeekConfig(vocab_size=16, d_model=16, n_layers=1, n_heads=heads, attention=("mla",), dense_hidden=8,
                            q_lora_rank=q_lora_rank, kv_lora_rank=kv_lora_rank, qk_nope_dim=4, rope_dim=2 * rope_pairs,
                            v_head_dim=3)
    torch.manual_seed(seed)
    attention = MultiHeadLatentAttention(config)
    x = torch.randn(2, 9, config.d_model)
    with torch.no_grad():
        assert torch.allclose(attention(x), attention(x, absorbed=True), atol=1e-5)
    assert attention.cache_values_per_token() == kv_lora_rank + 2 * rope_pairs


@pytest.mark.parametrize("changes, message", [
    (dict(attention=("mla", "csa")), "mixes V3's 'mla'"),
    (dict(attention=("mla",)), "one of .* per layer"),
    (dict(rope_dim=3), "rope_dim .* must be even"),
    (dict(kv_lora_rank=0), "MLA needs kv_lora_rank"),
    (dict(attention=("sliding", "csa"), q_lora_rank=8, head_dim=8, o_lora_rank=4, index_heads=0), "CSA layers need"),
    (dict(attention=("sliding", "hca"), head_dim=8, o_lora_rank=4), "V4 attention needs q_lora_rank"),
    (dict(attention=("sliding", "hca"), q_lora_rank=8, head_dim=12, o_groups=5, o_lora_rank=4), "grouped output"),
    (dict(dense_hidden=0), "dense blocks need dense_hidden"),
])
def test_impossible_configs_are_named(changes, message):
    base = dict(vocab_size=16, d_model=16, n_layers=2, n_heads=2, attention=("mla", "mla"), dense_hidden=8,
                kv_lora_rank=4, qk_nope_dim=4, rope_dim=2, v_head_dim=4)
    with pytest.raises(ValueError, match=message):
        DeepSeekConfig(**{**base, **changes})


@given(st.integers(2, 6), st.integers(0, 2**31 - 1), st.sampled_from([1.0, 4.0]))
def test_sinkhorn_approaches_doubly_stochastic_matrices(n, seed, spread):
    """Columns sum to 1 after each pass; rows get there as iterations go on (slowly for spread-out logits)."""
    logits = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * spread
    row_error = {}
    for iters in (20, 200):
        matrix = sinkhorn(logits, iters=iters)
        assert (matrix > 0).all() and torch.allclose(matrix.sum(0), torch.ones(n, dtype=torch.float64), atol=1e-5)
        row_error[iters] = (matrix.sum(1) - 1).abs().max().item()
    assert row_error[200] <= row_error[20] + 1e-9
    if spread == 1.0:  # logits of this size, V4's 20 iterations: rows within 1% of 1 (0.3% over 1,500 cases)
        assert row_error[20] < 1e-2 and torch.linalg.matrix_norm(matrix, ord=2) <= 1 + 1e-2


def test_a_mini_v4_with_mtp_trains_one_step():
    config = config_from_hf({**TINY_CONFIGS["deepseek_v4"], "model_type": "deepseek_v4"})
    model = DeepSeekModel(DeepSeekConfig(**{**config.to_dict(), "mtp_depth": 1}))
    output = model(TOKENS[:, :-1], targets=TOKENS[:, 1:], return_aux=True)
    loss = output.language_model_loss(TOKENS[:, 1:]) + output.mtp_loss(TOKENS[:, 1:])
    loss.backward()
    assert len(output.routing) == 5 and model.mtp.block.block.ffn.router.gate.weight.grad is not None


# ---- bad input: each error names the problem --------------------------------------------------------------------

def _copy(checkpoints, tmp_path, name="deepseek_v3"):
    folder = tmp_path / "copy"
    shutil.copytree(checkpoints[name][0], folder)
    return folder


def _edit_config(folder, **changes):
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("changes, message", [
    ({"model_type": "llama"}, "model_type 'llama' is not supported"),
    ({"kv_lora_rank": 10}, "'model.layers.0.self_attn.kv_a_layernorm.weight' has shape"),
    ({"kv_lora_rank": None}, "lacks the field 'kv_lora_rank'"),
    ({"rope_scaling": {"type": "yarn", "factor": 40}}, "'yarn' RoPE scaling"),
    ({"quantization_config": {"quant_method": "fp8"}}, "dequantize"),
    ({"num_hidden_layers": 4}, "lacks 15 tensors .* first 'layers.3."),
    ({"num_hidden_layers": 2, "num_nextn_predict_layers": 0}, "belongs to layer 2, but .* num_hidden_layers=2"),
    ({"moe_intermediate_size": 8}, "experts.0.down_proj.weight' has shape .* moe_intermediate_size"),
    ({"routed_scaling_factor": None}, "lacks the field 'routed_scaling_factor'"),
])
def test_bad_configs_are_named(checkpoints, tmp_path, changes, message):
    folder = _copy(checkpoints, tmp_path)
    _edit_config(folder, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(folder)


def test_bad_folders_are_named(checkpoints, tmp_path):
    folder = _copy(checkpoints, tmp_path)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file"):
        load_pretrained(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_pretrained(folder)


def test_a_missing_shard_is_named(checkpoints, tmp_path):
    _, reference = checkpoints["deepseek_v4"]
    folder = tmp_path / "sharded"
    reference.save_pretrained(folder, max_shard_size="20KB")
    assert load_pretrained(folder) is not None  # the shards load together
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"shard {shard.name} .* is missing"):
        load_pretrained(folder)


def test_a_checkpoint_of_another_model_type_is_refused(checkpoints, tmp_path):
    folder = _copy(checkpoints, tmp_path, "deepseek_v4")
    v3 = json.loads((checkpoints["deepseek_v3"][0] / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(v3))
    with pytest.raises(CheckpointError, match="has no place in a V3 model"):
        load_pretrained(folder)


def test_a_hash_table_pointing_past_the_experts_is_refused(checkpoints, tmp_path):
    folder = _copy(checkpoints, tmp_path, "deepseek_v4")
    _edit_config(folder, n_routed_experts=7, num_experts_per_tok=2)  # the table still names expert 7
    with pytest.raises(CheckpointError, match="experts.7|routes to expert 7"):
        load_pretrained(folder)


@pytest.mark.parametrize("seq", [1, 3, 7, 12])
def test_sequences_shorter_than_a_compression_window(checkpoints, seq):
    """Before a window is complete there is no compressed entry; transformers agrees token for token."""
    folder, reference = checkpoints["deepseek_v4"]
    result = compare(load_pretrained(folder), reference, TOKENS[:, :seq])
    assert result.max_abs_difference <= 1e-5 and result.expert_choices_equal
