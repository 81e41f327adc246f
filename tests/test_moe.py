import pytest
import torch
from hypothesis import given, strategies as st

from course_lib.moe import MoE, moe_cost
from course_lib.routing import PRESETS, RouterConfig
from course_lib.transformer import ModelConfig, SwiGLU
from course_lib.model import build_model

D = 16


def reference(moe, x, token_ids=None):
    """The defining formula, token by token: sum_j w[t,j] * expert(indices[t,j], x_t) + shared(x_t)."""
    routing = moe.route(x, token_ids)
    flat = x.reshape(-1, D)
    rows = []
    for t in range(flat.shape[0]):
        y = sum(routing.weights[t, j] * moe.expert_forward(int(routing.indices[t, j]), flat[t:t + 1])[0]
                for j in range(routing.indices.shape[1]) if routing.kept_mask()[t, j])
        rows.append(y + (moe.shared(flat[t:t + 1])[0] if moe.shared is not None else 0) if not isinstance(y, int)
                    else (moe.shared(flat[t:t + 1])[0] if moe.shared is not None else torch.zeros(D)))
    return torch.stack(rows).view_as(x)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("dispatch", ["loop", "sorted", "grouped"])
def test_output_matches_the_defining_formula(preset, dispatch):
    torch.manual_seed(0)
    moe = MoE(D, 8, 2, 12, n_shared=1, router=PRESETS[preset], dispatch=dispatch).eval()
    x, ids = torch.randn(3, 7, D), torch.randint(256, (3, 7))
    assert torch.allclose(moe(x, token_ids=ids), reference(moe, x, ids), atol=1e-5)


@given(st.integers(1, 10).flatmap(lambda e: st.tuples(st.just(e), st.integers(1, e))),
       st.sampled_from([None, 0.5, 1.0, 2.0]), st.integers(0, 2), st.integers(1, 30), st.integers(0, 2**16))
def test_dispatch_implementations_agree_in_forward_and_backward(ek, capacity_factor, n_shared, tokens, seed):
    n_experts, top_k = ek
    results = []
    for dispatch in ("loop", "sorted", "grouped"):
        torch.manual_seed(seed)
        moe = MoE(D, n_experts, top_k, 8, n_shared=n_shared, dispatch=dispatch,
                  router=RouterConfig(score="sigmoid", normalize=True, capacity_factor=capacity_factor))
        x = torch.randn(tokens, D, generator=torch.Generator().manual_seed(seed), requires_grad=True)
        y = moe(x)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()  # a real loss: not a stride-0 gradient
        results.append((y, x.grad, moe.w_gate_up.grad, moe.w_down.grad, moe.router.gate.weight.grad))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


@given(st.integers(1, 8).flatmap(lambda e: st.tuples(st.just(e), st.integers(1, e))), st.integers(1, 25))
def test_dropless_dispatch_visits_every_pair_exactly_once(ek, tokens):
    n_experts, top_k = ek
    moe = MoE(D, n_experts, top_k, 8)
    routing = moe.route(torch.randn(tokens, D))
    token, weight, counts = moe._sorted_pairs(routing)
    assert sum(counts) == tokens * top_k
    assert torch.bincount(token, minlength=tokens).tolist() == [top_k] * tokens


def test_one_expert_top_1_equals_the_dense_ffn_exactly():
    torch.manual_seed(0)
    dense = SwiGLU(D, 24)
    moe = MoE(D, 1, 1, 24)
    with torch.no_grad():
        moe.w_gate_up[0] = dense.gate_up.weight
        moe.w_down[0] = dense.down.weight
    x = torch.randn(4, 9, D)
    for dispatch in ("loop", "sorted"):
        moe.dispatch = dispatch
        assert torch.equal(moe(x), dense(x))


def test_moe_drops_into_the_transformer():
    config = ModelConfig(context_length=16, d_model=32, n_layers=3, n_heads=2, ffn_hidden=64,
                         moe=dict(n_experts=4, top_k=2, expert_hidden=16, n_shared=1, first_dense_layers=1, hash_layers=1,
                                  router=dict(score="sigmoid", normalize=True)))
    model = build_model(config)
    kinds = [type(block.ffn).__name__ for block in model.blocks]
    assert kinds == ["SwiGLU", "MoE", "MoE"]
    assert model.blocks[1].ffn.router.config.kind == "hash" and model.blocks[2].ffn.router.config.kind == "topk"
    inputs = torch.randint(256, (2, 16))
    loss = model.loss(inputs, inputs)
    loss.backward()
    assert model.blocks[2].ffn.router.gate.weight.grad.abs().sum() > 0


def test_moe_model_is_causal_with_token_choice_routing():
    torch.manual_seed(0)
    config = ModelConfig(context_length=16, d_model=32, n_layers=2, n_heads=2, ffn_hidden=64,
                         moe=dict(n_experts=4, top_k=2, expert_hidden=16))
    model = build_model(config).eval()
    inputs = torch.randint(256, (1, 16))
    changed = inputs.clone()
    changed[0, 10] = (changed[0, 10] + 1) % 256
    with torch.no_grad():
        assert torch.equal(model(inputs)[:, :10], model(changed)[:, :10])


def test_cost_counts_match_the_module():
    moe = MoE(D, 8, 2, 12, n_shared=1)
    cost = moe_cost(d_model=D, n_experts=8, top_k=2, expert_hidden=12, n_shared=1)
    assert cost.total_params == sum(p.numel() for p in moe.parameters())
    assert cost.active_params == (2 + 1) * 3 * D * 12 + D * 8
    assert cost.combinations == 28


@pytest.mark.parametrize("kwargs, match", [
    (dict(dispatch="fast"), "dispatch must be one of"),
    (dict(expert_hidden=0), "expert_hidden >= 1"),
    (dict(dispatch="grouped", expert_hidden=6), "divisible by 4"),
    (dict(top_k=9), "top_k must be between 1 and n_experts=8"),
])
def test_bad_moe_settings(kwargs, match):
    settings = dict(d_model=D, n_experts=8, top_k=2, expert_hidden=12) | kwargs
    with pytest.raises(ValueError, match=match):
        MoE(**settings)


def test_wrong_input_shape_or_dtype():
    moe = MoE(D, 4, 1, 8)
    with pytest.raises(ValueError, match=r"\(\.\.\., 16\)"):
        moe(torch.randn(3, 5))
    with pytest.raises(ValueError, match="float"):
        moe(torch.zeros(3, D, dtype=torch.long))
