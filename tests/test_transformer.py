import pytest
import torch
from hypothesis import given, strategies as st

from course_lib.transformer import (ModelConfig, SwiGLU, Transformer, count_parameters, dense_flops_per_token,
                                    dense_parameter_formula, generate, measured_flops_per_token)


def test_shapes(tiny_config):
    model = Transformer(tiny_config)
    logits = model(torch.randint(256, (3, 17)))
    assert logits.shape == (3, 17, 256)


@given(position=st.integers(0, 30), new_token=st.integers(0, 255))
def test_causality_future_tokens_never_change_earlier_logits(position, new_token):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(context_length=32, d_model=32, n_layers=2, n_heads=4, ffn_hidden=48)).eval()
    inputs = torch.randint(256, (1, 32), generator=torch.Generator().manual_seed(1))
    changed = inputs.clone()
    changed[0, position] = new_token
    with torch.no_grad():
        before, after = model(inputs), model(changed)
    assert torch.equal(before[:, :position], after[:, :position])


def test_changing_a_past_token_does_change_later_logits(tiny_config):
    """The causality test above would also pass for a model that ignores context; this one would not."""
    model = Transformer(tiny_config).eval()
    inputs = torch.randint(256, (1, 32), generator=torch.Generator().manual_seed(1))
    changed = inputs.clone()
    changed[0, 0] = (inputs[0, 0] + 1) % 256
    with torch.no_grad():
        assert not torch.allclose(model(inputs)[:, -1], model(changed)[:, -1])


@pytest.mark.parametrize("config", [ModelConfig(), ModelConfig(d_model=96, n_heads=3, n_layers=3, ffn_hidden=200,
                                                                context_length=64)])
def test_parameter_count_equals_formula(config):
    assert count_parameters(Transformer(config)) == sum(dense_parameter_formula(config).values())


def test_flop_formula_equals_flops_counted_by_torch(tiny_config):
    assert measured_flops_per_token(Transformer(tiny_config)) == sum(dense_flops_per_token(tiny_config).values())


def test_attention_weights_match_the_fused_kernel(tiny_config):
    model = Transformer(tiny_config).eval()
    attention = model.blocks[0].attn
    x = torch.randn(2, 10, tiny_config.d_model)
    weights = attention.attention_weights(x)  # (batch, heads, seq, seq)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 10))
    assert torch.all(weights.triu(1) == 0)
    _, _, v = attention._heads(x)
    manual = attention.out((weights @ v).transpose(1, 2).reshape(2, 10, tiny_config.d_model))
    assert torch.allclose(manual, attention(x), atol=1e-6)


def test_ffn_is_pluggable(tiny_config):
    calls = []

    def factory(config, layer_index):
        calls.append(layer_index)
        return SwiGLU(config.d_model, 8)

    model = Transformer(tiny_config, ffn_factory=factory)
    assert calls == [0, 1]
    assert all(block.ffn.hidden == 8 for block in model.blocks)


def test_loss_falls_when_overfitting_one_batch(tiny_config):
    torch.manual_seed(0)
    model = Transformer(tiny_config)
    inputs = torch.randint(256, (4, 33), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = model.loss(inputs[:, :-1], inputs[:, 1:])
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3 * first


@pytest.mark.parametrize("bad, match", [
    (dict(d_model=30, n_heads=4), "divisible"),
    (dict(d_model=0), "positive"),
    (dict(n_layers=-1), "positive"),
    (dict(ffn_hidden=2.5), "positive integer"),
])
def test_impossible_configs_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**bad)


def test_too_long_or_wrong_dtype_input(tiny_config):
    model = Transformer(tiny_config)
    with pytest.raises(ValueError, match="exceeds context_length=32"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="dtype long"):
        model(torch.zeros(1, 8))


def test_generate_is_seeded_and_greedy_is_deterministic(tiny_config):
    model = Transformer(tiny_config)
    prompt = torch.tensor([65, 66])
    a = generate(model, prompt, max_new_tokens=40, generator=torch.Generator().manual_seed(0))
    b = generate(model, prompt, max_new_tokens=40, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (42,) and torch.equal(a[:2], prompt)
    assert torch.equal(generate(model, prompt, max_new_tokens=5, temperature=0),
                       generate(model, prompt, max_new_tokens=5, temperature=0))
