import math

import pytest
import torch
from hypothesis import given, strategies as st

from course_lib.routing import PRESETS, Router, RouterConfig, capacity

D = 16


def make_router(n_experts, top_k, seed=0, **config):
    torch.manual_seed(seed)
    return Router(D, n_experts, top_k, RouterConfig(**config))


experts_and_k = st.integers(1, 12).flatmap(lambda e: st.tuples(st.just(e), st.integers(1, e)))
scores = st.sampled_from(["softmax", "sigmoid", "sqrt_softplus"])


@given(experts_and_k, scores, st.booleans(), st.integers(1, 40), st.integers(0, 2**16))
def test_every_token_goes_to_exactly_k_distinct_experts(ek, score, normalize, tokens, seed):
    n_experts, top_k = ek
    routing = make_router(n_experts, top_k, score=score, normalize=normalize)(torch.randn(tokens, D, generator=torch.Generator().manual_seed(seed)))
    assert routing.indices.shape == (tokens, top_k) and routing.indices.dtype == torch.long
    assert all(len(set(row)) == top_k for row in routing.indices.tolist())
    assert routing.scores.shape == (tokens, n_experts)


@given(experts_and_k, scores, st.sampled_from([1.0, 2.5]), st.integers(0, 2**16))
def test_weights_are_non_negative_and_sum_to_the_scaling_factor(ek, score, scaling, seed):
    n_experts, top_k = ek
    router = make_router(n_experts, top_k, score=score, normalize=True, routed_scaling=scaling)
    routing = router(torch.randn(20, D, generator=torch.Generator().manual_seed(seed)))
    assert torch.all(routing.weights >= 0)
    assert torch.allclose(routing.weights.sum(-1), torch.full((20,), scaling), atol=1e-5)


def test_softmax_without_renormalisation_keeps_the_raw_probabilities():
    routing = make_router(8, 2)(torch.randn(10, D))
    assert torch.allclose(routing.weights, routing.scores.gather(1, routing.indices))
    assert torch.all(routing.weights.sum(-1) < 1)
    assert torch.allclose(routing.scores.sum(-1), torch.ones(10))


@given(experts_and_k, st.floats(0.1, 2.0), st.integers(1, 60), st.integers(0, 2**16))
def test_capacity_is_never_exceeded(ek, factor, tokens, seed):
    n_experts, top_k = ek
    routing = make_router(n_experts, top_k, capacity_factor=factor)(torch.randn(tokens, D, generator=torch.Generator().manual_seed(seed)))
    assert routing.load(n_experts).max() <= capacity(tokens, n_experts, top_k, factor)
    assert torch.all(routing.weights[~routing.kept] == 0)


def test_capacity_drops_the_lowest_weights_first():
    router = make_router(4, 1, capacity_factor=0.5)
    with torch.no_grad():
        router.gate.weight.zero_()
        router.gate.weight[0, 0] = 1.0  # every token prefers expert 0, more strongly the larger x[:, 0]
    x = torch.zeros(8, D)
    x[:, 0] = torch.arange(8.0) + 1
    routing = router(x)
    assert routing.indices[:, 0].tolist() == [0] * 8
    assert routing.kept[:, 0].tolist() == [False] * 7 + [True]  # capacity ceil(0.5 * 8 / 4) = 1: the strongest stays


def test_dropless_keeps_everything():
    routing = make_router(4, 2)(torch.randn(30, D))
    assert routing.kept is None and routing.dropped_fraction() == 0.0
    assert routing.load(4).sum() == 60


@given(st.sampled_from([(8, 2, 1), (8, 4, 2), (16, 4, 3), (12, 3, 2)]), st.integers(0, 2**16))
def test_group_limited_routing_picks_only_inside_the_selected_groups(groups, seed):
    n_group, topk_group, top_k = groups
    n_experts = 16 if n_group in (8, 16) else 12
    router = make_router(n_experts, top_k, score="sigmoid", normalize=True, n_group=n_group, topk_group=topk_group)
    routing = router(torch.randn(25, D, generator=torch.Generator().manual_seed(seed)))
    per_group = n_experts // n_group
    grouped = routing.scores.view(25, n_group, per_group)
    group_score = grouped.topk(min(2, per_group), dim=-1).values.sum(-1)
    best = group_score.topk(topk_group, dim=-1).indices
    for row, allowed in zip(routing.indices.tolist(), best.tolist()):
        assert {e // per_group for e in row} <= set(allowed)


def test_group_limit_changes_some_choices():
    """A test that group limiting could fail: with 1 of 4 groups allowed, unrestricted top-4 must differ somewhere."""
    x = torch.randn(50, D)
    free = make_router(16, 4, score="sigmoid")(x)
    limited = make_router(16, 4, score="sigmoid", n_group=4, topk_group=1)(x)
    assert not torch.equal(free.indices.sort(-1).values, limited.indices.sort(-1).values)


def test_hash_routing_is_deterministic_and_ignores_content():
    router = make_router(8, 2, kind="hash")
    ids = torch.randint(256, (30,))
    a = router(torch.randn(30, D), token_ids=ids)
    b = router(torch.randn(30, D), token_ids=ids)
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.indices, router.token_to_experts[ids])
    with pytest.raises(ValueError, match="token ids"):
        router(torch.randn(30, D))


def test_expert_choice_gives_each_expert_the_same_number_of_tokens():
    routing = make_router(4, 2, kind="expert_choice", capacity_factor=1.0)(torch.randn(32, D))
    assert routing.load(4).tolist() == [16, 16, 16, 16]  # ceil(1.0 * 32 * 2 / 4)


def test_bias_changes_selection_but_never_the_weights():
    router = make_router(8, 2, score="sigmoid", normalize=True)
    x = torch.randn(40, D)
    before = router(x)
    router.bias[:] = torch.tensor([5.0, 0, 0, 0, 0, 0, 0, 0])
    after = router(x)
    assert torch.all((after.indices == 0).any(-1))  # the bias forces expert 0 in
    assert torch.equal(before.scores, after.scores)
    assert torch.allclose(after.weights, after.scores.gather(1, after.indices) / after.scores.gather(1, after.indices).sum(-1, keepdim=True))


def test_noisy_top_k_is_noisy_only_in_training():
    router = make_router(8, 2, noisy=True, normalize=True)
    x = torch.randn(10, D)
    router.eval()
    assert torch.equal(router(x).logits, router(x).logits)
    router.train()
    assert not torch.equal(router(x).logits, router(x).logits)


def test_gradients_reach_the_router():
    for name, config in PRESETS.items():
        torch.manual_seed(0)
        router = Router(D, 8, 2, config)
        routing = router(torch.randn(20, D), token_ids=torch.randint(256, (20,)))
        (routing.weights * torch.randn_like(routing.weights)).sum().backward()
        assert router.gate.weight.grad is not None and router.gate.weight.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_experts=4, top_k=0), "top_k must be between 1 and n_experts=4"),
    (dict(n_experts=4, top_k=5), "top_k must be between 1 and n_experts=4"),
    (dict(n_experts=4, top_k=1, capacity_factor=0.0), "capacity_factor must be > 0"),
    (dict(n_experts=6, top_k=1, n_group=4), "divisible by n_group"),
    (dict(n_experts=8, top_k=1, n_group=4, topk_group=5), "topk_group must be between 1 and n_group=4"),
    (dict(n_experts=8, top_k=4, n_group=4, topk_group=1), "cannot hold top_k=4"),
    (dict(n_experts=8, top_k=2, score="relu"), "router score must be one of"),
    (dict(n_experts=8, top_k=2, kind="random"), "router kind must be one of"),
])
def test_bad_router_settings(kwargs, match):
    n_experts, top_k = kwargs.pop("n_experts"), kwargs.pop("top_k")
    with pytest.raises(ValueError, match=match):
        Router(D, n_experts, top_k, RouterConfig(**kwargs))


def test_bad_router_input():
    router = make_router(4, 1)
    with pytest.raises(ValueError, match=r"float \(tokens, 16\)"):
        router(torch.randn(3, 8))
    with pytest.raises(ValueError, match="float"):
        router(torch.zeros(3, D, dtype=torch.long))
