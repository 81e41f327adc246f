import math

import pytest
import torch
from hypothesis import given, strategies as st

from course_lib.balancing import (BalanceConfig, BiasBalancer, coefficient_of_variation, global_load,
                                  layer_max_violation, max_violation, router_z_loss, routing_entropy,
                                  sequence_balance_loss, switch_aux_loss)
from course_lib.moe import MoE
from course_lib.routing import Router, RouterConfig
from course_lib.train import TrainConfig, train
from course_lib.transformer import ModelConfig
from course_lib.cached_training import training_hooks
from course_lib.model import build_model


def uniform_routing(tokens, n_experts, top_k):
    """Every expert gets the same number of assignments and the same mean probability."""
    indices = torch.stack([(torch.arange(tokens) * top_k + j) % n_experts for j in range(top_k)], 1)
    probs = torch.full((tokens, n_experts), 1.0 / n_experts)
    return probs, indices


@given(st.sampled_from([(8, 1), (8, 2), (16, 4), (6, 3)]), st.sampled_from([24, 48]))
def test_switch_loss_is_exactly_one_when_uniform(experts_k, tokens):
    n_experts, top_k = experts_k
    probs, indices = uniform_routing(tokens, n_experts, top_k)
    assert switch_aux_loss(probs, indices, n_experts).item() == pytest.approx(1.0)


def test_switch_loss_maximum_is_n_when_one_expert_takes_everything():
    probs = torch.zeros(10, 8)
    probs[:, 3] = 1.0
    indices = torch.full((10, 1), 3)
    assert switch_aux_loss(probs, indices, 8).item() == pytest.approx(8.0)


def test_sequence_loss_uniform_is_one_and_collapse_is_larger():
    probs, indices = uniform_routing(32, 8, 2)
    assert sequence_balance_loss(probs, indices, 8, seq_len=16).item() == pytest.approx(1.0)
    scores = torch.full((32, 8), 0.01)
    scores[:, :2] = 0.9
    collapsed = torch.tensor([[0, 1]] * 32)
    # all assignments on 2 of 8 experts: f = 8/(2*16) * 16 = 4 on each, P about 0.49 each -> about 3.9
    assert sequence_balance_loss(scores, collapsed, 8, seq_len=16).item() > 3.5


def test_sequence_loss_is_per_sequence():
    """Two sequences each collapsed on different experts: balanced over the batch, unbalanced per sequence."""
    scores = torch.full((8, 4), 0.25)
    indices = torch.tensor([[0]] * 4 + [[1]] * 4)
    assert sequence_balance_loss(scores, indices, 4, seq_len=4).item() == pytest.approx(1.0)  # P uniform
    scores_peaked = torch.full((8, 4), 0.01)
    scores_peaked[:4, 0] = 1.0
    scores_peaked[4:, 1] = 1.0
    per_sequence = sequence_balance_loss(scores_peaked, indices, 4, seq_len=4).item()
    whole_batch = sequence_balance_loss(scores_peaked, indices, 4, seq_len=8).item()
    assert per_sequence > 1.9 * whole_batch


def test_z_loss_values():
    assert router_z_loss(torch.zeros(5, 4)).item() == pytest.approx(math.log(4) ** 2)
    assert router_z_loss(torch.full((3, 4), 10.0)).item() > router_z_loss(torch.zeros(3, 4)).item()


def test_aux_loss_gradient_reaches_the_router():
    torch.manual_seed(0)
    router = Router(16, 8, 2, RouterConfig())
    routing = router(torch.randn(64, 16))
    switch_aux_loss(routing.scores, routing.indices, 8).backward()
    assert router.gate.weight.grad is not None and router.gate.weight.grad.abs().sum() > 0


def test_aux_loss_gradient_reaches_the_router_through_the_training_loop(corpus):
    from course_lib.balancing import balance_losses
    from course_lib.cached_training import training_hooks

    config = ModelConfig(context_length=16, d_model=32, n_layers=1, n_heads=2, ffn_hidden=32,
                         moe=dict(n_experts=4, top_k=1, expert_hidden=16))
    # the hook's term alone has a gradient on the gate
    torch.manual_seed(0)
    model = build_model(config)
    batch = corpus.get_batch("train", batch_size=2, seq_len=16, generator=torch.Generator().manual_seed(0))
    term = balance_losses(BalanceConfig(aux_loss=1.0))(model(batch.inputs, return_aux=True), batch)["aux_loss"]
    term.backward()
    assert model.blocks[0].ffn.router.gate.weight.grad.abs().sum() > 0
    # and the loop applies it: one step with the aux loss moves the gate differently from one step without
    gates = {}
    for coefficient in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_model(config)
        train_config = TrainConfig(steps=1, batch_size=2, seq_len=16, eval_every=1, eval_batches=1)
        losses, callbacks = training_hooks(model, train_config, BalanceConfig(aux_loss=coefficient))
        history = train(model, corpus, train_config, losses=losses, callbacks=callbacks, progress=False)
        gates[coefficient] = model.blocks[0].ffn.router.gate.weight.detach().clone()
    assert history.extra["aux_loss"][0] >= 1.0 - 1e-6  # top-1 on 4 experts: at least 1, the balanced value
    assert not torch.equal(gates[0.0], gates[1.0])


def test_bias_never_changes_the_combine_weights():
    torch.manual_seed(0)
    moe = MoE(16, 8, 2, 8, router=RouterConfig(score="sigmoid", normalize=True))
    x = torch.randn(50, 16)
    moe.router.bias[:] = torch.linspace(-0.5, 0.5, 8)
    routing = moe.route(x)
    chosen = routing.scores.gather(1, routing.indices)
    assert torch.allclose(routing.weights, chosen / chosen.sum(-1, keepdim=True))


def test_bias_update_moves_load_the_right_way():
    torch.manual_seed(0)
    router = Router(16, 8, 2, RouterConfig(score="sigmoid"))
    with torch.no_grad():
        router.gate.weight[0] += 0.2  # with inputs of positive mean, expert 0 scores high for most tokens
    x = torch.randn(512, 16) + 1.0
    balancer = BiasBalancer(8, 0.05, bias=router.bias)
    before = router(x).load(8)
    for _ in range(40):
        balancer.update(router(x).load(8))
    after = router(x).load(8)
    assert router.bias[0] < 0 < router.bias.max()
    assert max_violation(after) < 0.5 * max_violation(before)


def test_bias_rate_zero_freezes():
    balancer = BiasBalancer(4, 0.0)
    balancer.update(torch.tensor([10, 0, 0, 0]))
    assert torch.equal(balancer.bias, torch.zeros(4))


def test_max_violation_and_friends():
    assert max_violation(torch.tensor([5, 5, 5, 5])) == 0.0
    assert max_violation(torch.tensor([8, 0, 0, 0])) == pytest.approx(3.0)
    assert coefficient_of_variation(torch.tensor([3, 3, 3])) == 0.0
    assert routing_entropy(torch.full((2, 4), 0.25)) == pytest.approx(math.log(4))
    assert layer_max_violation(torch.tensor([[1.0, 1.0], [2.0, 0.0]])) == pytest.approx(0.5)


@pytest.mark.parametrize("call, match", [
    (lambda: BiasBalancer(4, -0.1), "update_rate must be >= 0"),
    (lambda: BiasBalancer(4, 0.1).update(torch.ones(3)), "shape \\(4,\\)"),
    (lambda: BalanceConfig(aux_loss=-1.0), "BalanceConfig.aux_loss must be >= 0"),
    (lambda: switch_aux_loss(torch.zeros(0, 4), torch.zeros(0, 1, dtype=torch.long), 4), "empty batch"),
    (lambda: switch_aux_loss(torch.zeros(3, 4), torch.zeros(3, 1, dtype=torch.long), 5), "n_experts=5"),
    (lambda: max_violation(torch.tensor([])), "non-empty"),
    (lambda: sequence_balance_loss(torch.ones(10, 4), torch.zeros(10, 1, dtype=torch.long), 4, seq_len=3), "seq_len=3"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_loss_free_balancing_lowers_max_violation_on_a_short_seeded_run(corpus):
    config = ModelConfig(context_length=32, d_model=48, n_layers=2, n_heads=2, ffn_hidden=96,
                         moe=dict(n_experts=8, top_k=2, expert_hidden=24, router=dict(score="sigmoid", normalize=True)))
    train_config = TrainConfig(steps=120, batch_size=8, seq_len=32, lr=6e-3, warmup_steps=10, eval_every=120, eval_batches=4)
    results = {}
    for name, balance in (("none", BalanceConfig()), ("loss-free", BalanceConfig(bias_update_rate=0.01))):
        torch.manual_seed(0)
        model = build_model(config)
        losses, callbacks = training_hooks(model, train_config, balance)
        train(model, corpus, train_config, losses=losses, callbacks=callbacks, progress=False)
        loads = global_load(model, corpus.eval_batches(n_batches=4, batch_size=8, seq_len=32))
        results[name] = layer_max_violation(loads)
    assert results["loss-free"] < 0.5 * results["none"], results


def test_training_records_routing_statistics(corpus):
    model = build_model(ModelConfig(context_length=16, d_model=32, n_layers=2, n_heads=2, ffn_hidden=32,
                                    moe=dict(n_experts=4, top_k=2, expert_hidden=16)))
    train_config = TrainConfig(steps=10, batch_size=2, seq_len=16, eval_every=10, eval_batches=1, record_every=5)
    history = train(model, corpus, train_config, callbacks=training_hooks(model, train_config)[1], progress=False)
    assert len(history.extra["max_violation_batch"]) == 10
    assert [r["step"] for r in history.routing] == [1, 5, 10]
    assert len(history.routing[0]["load"]) == 2 and sum(history.routing[0]["load"][0]) == 2 * 16 * 2


def test_bias_updates_reach_the_model_after_it_moves(corpus):
    """train() moves the model (model.to(device)), which replaces its buffers; the updater must follow them."""
    config = ModelConfig(context_length=16, d_model=32, n_layers=1, n_heads=2, ffn_hidden=32,
                         moe=dict(n_experts=4, top_k=1, expert_hidden=16, dispatch="sorted"))
    torch.manual_seed(0)
    model = build_model(config)
    train_config = TrainConfig(steps=1, batch_size=2, seq_len=16, eval_every=1, eval_batches=1)  # one step: ±u cannot cancel
    losses, callbacks = training_hooks(model, train_config, BalanceConfig(bias_update_rate=0.1))
    stale = model.blocks[0].ffn.router.bias
    model.double()  # on the CPU, a dtype move stands in for a device move: both replace the buffer tensors
    assert model.blocks[0].ffn.router.bias is not stale
    train(model, corpus, train_config, losses=losses, callbacks=callbacks, progress=False)
    assert model.blocks[0].ffn.router.bias.abs().sum() > 0 and stale.abs().sum() == 0
