import pytest
import torch

from course_lib.anatomy import count_params, flops_per_token, kv_cache_bytes_per_token, load_config, moe_params
from course_lib.experiments import mini_deepseek_config
from course_lib.train import TrainConfig, train
from course_lib.transformer import ModelConfig
from course_lib.model import build_model

PUBLISHED = {"deepseek-ai--DeepSeek-V3": (671e9, 37e9), "mistralai--Mixtral-8x7B-v0.1": (46.7e9, 12.9e9),
             "Qwen--Qwen3-30B-A3B": (30.5e9, 3.3e9)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_totals_match_published_within_one_percent(name):
    count = count_params(load_config(name))
    total, active = PUBLISHED[name]
    assert abs(count.total / total - 1) < 0.01
    assert abs(count.active / active - 1) < 0.02  # published active figures are 2-3 significant digits
    assert sum(count.breakdown.values()) == count.total


def test_deepseek_v3_details():
    count = count_params(load_config("deepseek-ai--DeepSeek-V3"))
    assert count.breakdown["dense FFN layers"] == 3 * 3 * 7168 * 18432
    assert count.breakdown["routed experts"] == 58 * 256 * 3 * 7168 * 2048
    assert 11e9 < count.mtp < 12e9 and count.mtp + 2 * 129280 * 7168 == pytest.approx(14e9, rel=0.05)  # "14B MTP"
    # transformers 5.23's DeepseekV3ForCausalLM built from this config on the meta device has 671,026,404,352
    # parameters (measured 2026-11-30; it leaves out the MTP layer, as the course's total does); the difference
    # is the balance bias, which it keeps as a buffer
    assert count.total - 58 * 256 == 671_026_404_352
    assert "buffers" in count.notes[0] and "671,026,404,352" in count.notes[0]


def test_attention_without_query_compression():
    """Small DeepSeek-style configs set q_lora_rank to null: the queries are then one plain projection."""
    from course_lib.anatomy import attention_params

    config = load_config("deepseek-ai--DeepSeek-V3")
    hidden, heads, q_rank = config["hidden_size"], config["num_attention_heads"], config["q_lora_rank"]
    qk = config["qk_nope_head_dim"] + config["qk_rope_head_dim"]
    plain = attention_params({**config, "q_lora_rank": None})
    assert attention_params(config) - plain == hidden * q_rank + q_rank + q_rank * heads * qk - hidden * heads * qk
    assert count_params({**config, "q_lora_rank": None}).total > 0  # used to raise TypeError


def test_kv_cache_mla_vs_mha_and_gqa():
    v3 = load_config("deepseek-ai--DeepSeek-V3")
    assert kv_cache_bytes_per_token(v3) == 61 * 576 * 2
    assert kv_cache_bytes_per_token(v3, attention="mha") == 61 * 128 * (128 + 64 + 128) * 2
    mixtral = load_config("mistralai--Mixtral-8x7B-v0.1")
    assert kv_cache_bytes_per_token(mixtral) == 32 * 2 * 8 * 128 * 2
    assert flops_per_token(v3) > 2 * 35e9


def test_unknown_type_and_missing_field_are_named():
    with pytest.raises(ValueError, match="unknown model_type 'llama'"):
        count_params({"model_type": "llama"})
    config = load_config("mistralai--Mixtral-8x7B-v0.1")
    del config["num_key_value_heads"]
    with pytest.raises(ValueError, match="'num_key_value_heads'"):
        count_params(config)
    flash = load_config("deepseek-ai--DeepSeek-V4-Flash")  # counted exactly since issue 15 (tests/test_anatomy_exact.py)
    assert count_params(flash).breakdown["routed experts"] == moe_params(flash)["routed experts"]
    assert 276e9 < moe_params(flash)["routed experts"] < 278e9


def test_mtp_loss_shape_and_gradient():
    torch.manual_seed(0)
    model = build_model(ModelConfig(context_length=16, d_model=32, n_layers=2, n_heads=2, ffn_hidden=32, mtp_depth=1))
    inputs, targets = torch.randint(256, (3, 16)), torch.randint(256, (3, 16))
    output = model(inputs, targets=targets, return_aux=True)
    assert output.mtp_logits.shape == (3, 15, 256)  # row i predicts token i+2
    loss = output.mtp_loss(targets)
    assert loss.dim() == 0
    loss.backward()
    assert model.mtp.project.weight.grad.abs().sum() > 0 and model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model(inputs, return_aux=True).mtp_logits is None  # no targets, no MTP
    with pytest.raises(ValueError, match="no MTP logits"):
        model(inputs, return_aux=True).mtp_loss(targets)
    with pytest.raises(ValueError, match="mtp_depth"):
        ModelConfig(mtp_depth=2)


def test_the_mtp_moe_layer_is_listed_routed_and_balanced(corpus):
    """The MTP module's MoE layer used to be invisible to balancing (it walked model.blocks only)."""
    import dataclasses

    from course_lib.balancing import BalanceConfig
    from course_lib.cached_training import training_hooks

    config = dataclasses.replace(mini_deepseek_config("v4"), context_length=32, d_model=48, n_layers=2, n_heads=2,
                                 ffn_hidden=96)
    torch.manual_seed(0)
    model = build_model(config)
    layers = model.moe_layers()
    assert len(layers) == 3 and layers[-1] is model.mtp.block.ffn
    batch = corpus.get_batch("train", batch_size=4, seq_len=32, generator=torch.Generator().manual_seed(0))
    output = model(batch.inputs, targets=batch.targets, return_aux=True)
    assert len(output.routing) == 3 and output.routing[-1].indices.shape[0] == 4 * 31  # MTP routes seq - 1 positions
    train_config = TrainConfig(steps=3, batch_size=4, seq_len=32, eval_every=3, eval_batches=1, record_every=1)
    losses, callbacks = training_hooks(model, train_config, BalanceConfig(bias_update_rate=0.01, sequence_loss=1e-4))
    history = train(model, corpus, train_config, losses=losses, callbacks=callbacks, progress=False)
    assert model.mtp.block.ffn.router.bias.abs().sum() > 0  # the bias updates reached the MTP layer
    assert all(len(record["load"]) == 3 for record in history.routing)  # and so did the routing records


def test_mini_deepseek_loss_falls_on_a_short_seeded_run(corpus):
    import dataclasses

    from course_lib.balancing import BalanceConfig
    from course_lib.cached_training import training_hooks

    config = dataclasses.replace(mini_deepseek_config("v4"), context_length=32, d_model=48, n_layers=2, n_heads=2, ffn_hidden=96)
    config.moe.expert_hidden = 12
    torch.manual_seed(0)
    model = build_model(config)
    assert model.blocks[0].ffn.router.config.kind == "hash" and model.mtp is not None
    train_config = TrainConfig(steps=60, batch_size=8, seq_len=32, eval_every=30, eval_batches=2)
    losses, callbacks = training_hooks(model, train_config, BalanceConfig(bias_update_rate=0.01, sequence_loss=1e-4))
    history = train(model, corpus, train_config, losses=losses, callbacks=callbacks, progress=False)
    assert history.val_loss[-1] < history.val_loss[0] and "mtp_loss" in history.extra and "sequence_loss" in history.extra
    v3 = mini_deepseek_config("v3")
    assert v3.moe.router.n_group == 4 and v3.moe.router.score == "sigmoid"
