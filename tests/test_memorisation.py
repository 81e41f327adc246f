"""Notebook 09's task: facts to memorise, sums to compute, and the accuracies that compare them."""
import torch
import torch.nn as nn
import pytest

from course_lib.memorisation import FactsAndSums, FactsAndSumsConfig
from course_lib.moe import MoE
from course_lib.routing import RouterConfig

TASK = FactsAndSums(FactsAndSumsConfig(n_facts=300, held_out_sums=500))


class Oracle(nn.Module):
    """Predicts every next byte right for the records it was given (and byte 0 elsewhere)."""

    def __init__(self, records: torch.Tensor):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device
        self.table = {tuple(row[:-1].tolist()): row[1:] for row in records}

    def forward(self, inputs):
        rows = [self.table.get(tuple(row.tolist()), torch.zeros(inputs.shape[1], dtype=torch.long)) for row in inputs]
        return nn.functional.one_hot(torch.stack(rows), 256).float() + 0 * self.anchor


def test_records_are_reproducible_well_formed_and_split():
    again = FactsAndSums(TASK.config)
    assert all(torch.equal(TASK.rows[key], again.rows[key]) for key in TASK.rows) and TASK.fingerprint() == again.fingerprint()
    assert FactsAndSums(FactsAndSumsConfig(n_facts=300, held_out_sums=500, seed=1)).fingerprint() != TASK.fingerprint()
    facts = TASK.records("facts", "train")
    assert len(facts) == 300 and len({f.split(":")[0] for f in facts}) == 300  # unique keys
    assert all(len(r) == TASK.config.record_length for r in facts + TASK.records("sums", "train"))
    train_sums, held_out = TASK.records("sums", "train"), TASK.records("sums", "val")
    assert len(held_out) == 500 and len(train_sums) == 10_000 - 500 and not set(train_sums) & set(held_out)
    for record in train_sums[:200] + held_out[:200]:
        question, answer = record.strip().split("=")
        a, b = question.split("+")
        assert int(a) + int(b) == int(answer)


def test_answer_positions_pick_the_value_and_the_sum():
    for domain, expected in (("facts", lambda r: r[r.index(":") + 1:-1]), ("sums", lambda r: r[r.index("=") + 1:-1])):
        record = TASK.records(domain, "val")[0]
        targets = record.encode()[1:]
        assert targets[TASK.answer[domain]].decode() == expected(record)


def test_accuracy_reads_one_for_an_oracle_and_about_chance_otherwise():
    everything = torch.cat([TASK.rows["facts", "val"], TASK.rows["sums", "val"]])
    oracle = Oracle(everything)
    assert TASK.scores(oracle) == {"facts_byte": 1.0, "facts_exact": 1.0, "sums_byte": 1.0, "sums_exact": 1.0}
    knows_sums_only = Oracle(TASK.rows["sums", "val"])
    assert TASK.accuracy(knows_sums_only, "facts").byte == 0.0 and TASK.accuracy(knows_sums_only, "sums").exact == 1.0


def test_batches_are_whole_records_half_facts_half_sums():
    batch = TASK.get_batch("train", batch_size=10, seq_len=9, generator=torch.Generator().manual_seed(0))
    assert batch.inputs.shape == batch.targets.shape == (10, 9)
    assert batch.domains.tolist() == [0] * 5 + [1] * 5
    assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])
    assert all(bytes(row.tolist()).decode()[4] == ":" for row in batch.inputs[:5])
    with pytest.raises(ValueError, match="seq_len must be 9"):
        TASK.get_batch("train", batch_size=4, seq_len=64, generator=torch.Generator())
    evals = TASK.eval_batches(n_batches=4, batch_size=8, seq_len=9)
    assert [b.domains.unique().tolist() for b in evals] == [[0], [1], [0], [1]]


@pytest.mark.parametrize("bad", [dict(n_facts=0), dict(held_out_sums=10_000), dict(sum_digits=0),
                                 dict(sum_digits=1, held_out_sums=10)])  # 1-character keys: 36 facts at most
def test_impossible_configs_are_refused(bad):
    with pytest.raises(ValueError):
        FactsAndSumsConfig(**bad)


@pytest.mark.parametrize("normalize", [False, True])
def test_top1_renormalised_gate_starves_the_router(normalize):
    """Switch's gate (top-1, not renormalised) trains the router; renormalised over one expert the weight is always
    1, so no gradient reaches it: notebook 09's pitfall."""
    torch.manual_seed(0)
    moe = MoE(16, n_experts=4, top_k=1, expert_hidden=8, router=RouterConfig(normalize=normalize))
    moe(torch.randn(32, 16)).pow(2).sum().backward()
    router_gradient = sum(p.grad.abs().sum() for p in moe.router.parameters() if p.grad is not None)
    assert (router_gradient < 1e-6) == normalize
