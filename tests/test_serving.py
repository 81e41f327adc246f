import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from course_lib.config import ModelConfig, MoEConfig
from course_lib.exercises.nb10 import lru_hits
from course_lib.model import build_model
from course_lib.serving import (POLICIES, ExpertCache, ExpertStore, Trace, decode_trace, place_experts, simulate,
                                time_expert_decoding)

N_EXPERTS, TOP_K = 6, 2


@st.composite
def traces(draw, top_k=TOP_K):
    """Random traces: per step and layer, top_k distinct experts."""
    steps, layers = draw(st.integers(1, 40)), draw(st.integers(1, 3))
    rows = [[draw(st.lists(st.integers(0, N_EXPERTS - 1), min_size=top_k, max_size=top_k, unique=True))
             for _ in range(layers)] for _ in range(steps)]
    return Trace(torch.tensor(rows), N_EXPERTS)


@given(st.sampled_from([1, 2, 3]).flatmap(lambda k: traces(top_k=k)))
def test_cache_theorems_hold_on_any_trace(trace):
    top_k = trace.experts.shape[2]
    hits = {policy: [simulate(trace, capacity=c, policy=policy).hits for c in range(top_k, N_EXPERTS + 1)]
            for policy in POLICIES}
    assert hits["lru"] == sorted(hits["lru"])  # LRU is a stack algorithm: a larger cache never hits less
    assert all(b >= max(l, f) for b, l, f in zip(hits["belady"], hits["lru"], hits["lfu"]))  # Belady: the optimum
    distinct = sum(len(set(trace.experts[:, layer].flatten().tolist())) for layer in range(trace.experts.shape[1]))
    assert all(simulate(trace, capacity=N_EXPERTS, policy=p).misses == distinct for p in POLICIES)  # compulsory only


@given(traces())
def test_lru_agrees_with_the_exercise_reference(trace):
    for layer in range(trace.experts.shape[1]):
        single = Trace(trace.experts[:, layer:layer + 1], N_EXPERTS)
        assert simulate(single, capacity=3, policy="lru").hits == lru_hits(trace.experts[:, layer].tolist(), 3)


def test_policies_differ_where_they_should():
    # one layer, capacity 2, top-1 requests: A B C A B C ... LRU always misses; Belady keeps one of them
    trace = Trace(torch.tensor([[[e]] for e in [0, 1, 2] * 4]), 3)
    assert simulate(trace, capacity=2, policy="lru").hits == 0
    assert simulate(trace, capacity=2, policy="belady").hits > 0


def test_bad_cache_settings():
    with pytest.raises(ValueError, match="cannot hold the 2 experts one token uses.*top_k = 2"):
        ExpertCache(n_layers=1, capacity=1, top_k=2)
    with pytest.raises(ValueError, match="policy must be one of"):
        ExpertCache(n_layers=1, capacity=2, top_k=2, policy="fifo")
    with pytest.raises(ValueError, match="needs the future"):
        ExpertCache(n_layers=1, capacity=2, top_k=2, policy="belady")


@pytest.fixture(scope="module")
def tiny_moe():
    torch.manual_seed(0)
    config = ModelConfig(context_length=16, d_model=16, n_layers=2, n_heads=2, ffn_hidden=32,
                         moe=MoEConfig(n_experts=N_EXPERTS, top_k=TOP_K, expert_hidden=8))
    return build_model(config).eval()


def test_decode_trace_records_each_new_token(tiny_moe):
    tokens, trace = decode_trace(tiny_moe, torch.tensor([1, 2, 3]), new_tokens=5, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (8,) and trace.experts.shape == (5, 2, TOP_K)
    last = tiny_moe(tokens[:-1][None], return_aux=True).routing  # the 5th new token was chosen from these
    assert torch.equal(trace.experts[-1], torch.stack([r.indices[-1] for r in last]))
    with pytest.raises(ValueError, match="no MoE layer"):
        decode_trace(build_model(ModelConfig(context_length=8, d_model=8, n_layers=1, n_heads=1, ffn_hidden=8)),
                     torch.tensor([1]), new_tokens=1)


def test_store_reads_the_experts_back_exactly(tiny_moe, tmp_path):
    store = ExpertStore.write(tiny_moe, tmp_path / "experts.safetensors")
    moe = tiny_moe.moe_layers()[1]
    w_gate_up, w_down = store.read(1, 3)
    assert torch.equal(w_gate_up, moe.w_gate_up[3]) and torch.equal(w_down, moe.w_down[3])
    trace = Trace(torch.tensor([[[0, 1], [2, 3]], [[0, 4], [2, 5]]]), N_EXPERTS)
    seconds, stats = time_expert_decoding(store, trace, capacity=2, policy="lru", d_model=16)
    assert seconds > 0 and stats.misses == store.reads - 1 == 6 and stats.hits == 2  # the read above, then 6 misses


def test_redundant_copies_even_out_the_devices():
    load = torch.tensor([100, 10, 10, 10, 10, 10, 10, 10])
    plain = place_experts(load, devices=4, rearrange=False)
    copies = place_experts(load, devices=4, redundant=4)
    assert plain.imbalance == pytest.approx(110 / 42.5)
    assert copies.imbalance < plain.imbalance
    assert sum(e == 0 for hosted in copies.devices for e, _ in hosted) > 1  # the busy expert got copies
    assert all(len({e for e, _ in hosted}) == len(hosted) for hosted in copies.devices)  # never two on one device
    assert copies.imbalance_for(load) == pytest.approx(copies.imbalance)
    with pytest.raises(ValueError, match="do not split evenly over 3 devices"):
        place_experts(load, devices=3)
    with pytest.raises(ValueError, match="more than 8 experts can take"):
        place_experts(load, devices=2, redundant=10)
