"""Where do MoE's extra parameters pay? Memorising facts against computing sums (notebook 09).

Jelassi et al., *Mixture of Parrots: Experts improve memorization more than reasoning* (ICLR 2025), found that at
a fixed number of active parameters, more experts keep improving memorisation while reasoning saturates. MoE
buys parameters at (almost) fixed compute, and parameters are where a model stores what it cannot compute.
This module builds a task, small enough for a CPU, that separates the two kinds of knowledge:

- **facts**: ``n_facts`` records ``key:value`` with a random key of letters and digits and a random 4-letter
  value, generated from a fixed seed. Nothing in a key predicts its value, so the only way to answer is to have
  stored that record: recall of the records seen in training measures memorisation.
- **sums**: ``ab+cd=xyz``-style additions, zero-padded (the answer has one digit more than the operands). A held-out set of sums never appears in training, so
  answering those needs the procedure (digit sums and carries), not a stored answer: a small stand-in for
  reasoning.

Both kinds of record have the same length, one record per row, so a batch is a (rows, record_length) tensor and
the course's ``train`` loop runs on it unchanged (``FactsAndSums`` offers the interface it reads from a Corpus).
"""
from __future__ import annotations

import hashlib
import inspect
import random
import string
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from .data import Batch
from .hardware import model_device

FACT_VALUE_LETTERS = 4
KEY_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class FactsAndSumsConfig:
    n_facts: int = 2000  # records to memorise
    sum_digits: int = 2  # digits of each operand; the answer has one more
    held_out_sums: int = 2000  # sums kept out of training, to test the procedure
    seed: int = 2025  # the records are a pure function of this config

    def __post_init__(self):
        if self.n_facts < 1 or self.sum_digits < 1 or self.held_out_sums < 1:
            raise ValueError(f"n_facts, sum_digits and held_out_sums must be >= 1, got {self}")
        if self.n_facts > len(KEY_ALPHABET) ** self.key_length:
            raise ValueError(f"{self.n_facts} facts need distinct keys, but {self.key_length}-character keys allow only "
                             f"{len(KEY_ALPHABET) ** self.key_length}: use more sum_digits (longer records) or fewer facts")
        if self.held_out_sums >= 10 ** (2 * self.sum_digits):
            raise ValueError(f"held_out_sums={self.held_out_sums} leaves no sum of {self.sum_digits}-digit numbers to "
                             f"train on (there are {10 ** (2 * self.sum_digits)}); hold out fewer")

    @property
    def record_length(self) -> int:
        """Bytes per record: ``aa+bb=ccc`` plus a newline; a fact's key is as long as needed to match."""
        return 3 * self.sum_digits + 4

    @property
    def key_length(self) -> int:
        return self.record_length - FACT_VALUE_LETTERS - 2  # key, ':', value, newline


@dataclass
class Accuracy:
    """Answer accuracy under teacher forcing (the model sees the true prefix)."""
    byte: float  # share of answer bytes predicted right (facts: chance 1/26)
    exact: float  # share of records with every answer byte right: what greedy decoding from the prompt answers


def _records_to_tensor(records: list[str]) -> torch.Tensor:
    return torch.tensor([list(r.encode()) for r in records], dtype=torch.long)  # (records, record_length)


@torch.no_grad()
def _evaluate(model: nn.Module, rows: torch.Tensor, **kwargs):
    """The model's output on ``rows[:, :-1]`` in eval mode, on the model's device; its train/eval mode restored."""
    was_training = model.training
    model.eval()
    try:
        return model(rows[:, :-1].to(model_device(model)), **kwargs)
    finally:
        model.train(was_training)


class FactsAndSums:
    """The training data of notebook 09, with the interface ``course_lib.train.train`` reads from a ``Corpus``.

    Training batches are half facts, half training sums. The validation split holds the same facts (recall of
    seen records is the point) and the held-out sums.
    """
    domains = ("facts", "sums")

    def __init__(self, config: FactsAndSumsConfig = FactsAndSumsConfig()):
        self.config = config
        rng = random.Random(config.seed)
        keys: set[str] = set()
        while len(keys) < config.n_facts:  # terminates: the config checked that enough distinct keys exist
            keys.add("".join(rng.choice(KEY_ALPHABET) for _ in range(config.key_length)))
        facts = [f"{key}:{''.join(rng.choice(string.ascii_lowercase) for _ in range(FACT_VALUE_LETTERS))}\n"
                 for key in sorted(keys)]
        d = config.sum_digits
        sums = [f"{a:0{d}d}+{b:0{d}d}={a + b:0{d + 1}d}\n" for a in range(10 ** d) for b in range(10 ** d)]
        rng.shuffle(sums)
        facts = _records_to_tensor(facts)  # one tensor for both splits: recall is measured on the trained records
        self.rows = {("facts", "train"): facts, ("facts", "val"): facts,
                     ("sums", "train"): _records_to_tensor(sums[config.held_out_sums:]),
                     ("sums", "val"): _records_to_tensor(sums[:config.held_out_sums])}
        # where each answer sits among the targets (targets = record[1:]): the value after ':', the digits after '='
        answer_length = {"facts": FACT_VALUE_LETTERS, "sums": d + 1}
        self.answer = {domain: slice(config.record_length - 2 - n, config.record_length - 2)
                       for domain, n in answer_length.items()}

    def records(self, domain: str, split: str) -> list[str]:
        return [bytes(row.tolist()).decode() for row in self.rows[domain, split]]

    def get_batch(self, split: str, *, batch_size: int, seq_len: int, generator: torch.Generator,
                  domain: str | None = None) -> Batch:
        """``batch_size`` random records (half facts, half sums unless ``domain`` is set), one per row."""
        if seq_len != self.config.record_length - 1:
            raise ValueError(f"this task's rows are whole records: seq_len must be {self.config.record_length - 1}, "
                             f"got {seq_len}")
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        counts = {"facts": batch_size // 2, "sums": batch_size - batch_size // 2} if domain is None else {domain: batch_size}
        rows, domain_ids = [], []
        for name, count in counts.items():
            pool = self.rows[name, split]
            rows.append(pool[torch.randint(len(pool), (count,), generator=generator)])
            domain_ids += [self.domains.index(name)] * count
        records = torch.cat(rows)  # (batch_size, record_length)
        return Batch(records[:, :-1], records[:, 1:], torch.tensor(domain_ids))

    def eval_batches(self, *, n_batches: int, batch_size: int, seq_len: int, seed: int = 1234) -> list[Batch]:
        """A fixed validation set, alternating facts and held-out sums batches."""
        generator = torch.Generator().manual_seed(seed)
        return [self.get_batch("val", batch_size=batch_size, seq_len=seq_len, generator=generator,
                               domain=self.domains[i % 2]) for i in range(n_batches)]

    def fingerprint(self) -> str:
        """Identifies the training data for the run cache: the records and the code that samples them."""
        sampling = inspect.getsource(FactsAndSums.get_batch) + inspect.getsource(FactsAndSums.eval_batches)
        digest = hashlib.sha256(repr(asdict(self.config)).encode() + sampling.encode())
        for key in sorted(self.rows):
            digest.update(self.rows[key].numpy().tobytes())
        return digest.hexdigest()

    def accuracy(self, model: nn.Module, domain: str, *, split: str = "val") -> Accuracy:
        """Teacher-forced answer accuracy of ``model`` on every record of ``domain`` (facts: the ones it trained on;
        sums: the held-out ones). Runs where the model is."""
        rows = self.rows[domain, split]
        predicted = _evaluate(model, rows).argmax(-1).cpu()  # (records, record_length - 1)
        right = (predicted == rows[:, 1:])[:, self.answer[domain]]  # (records, answer bytes)
        return Accuracy(byte=right.float().mean().item(), exact=right.all(1).float().mean().item())

    def scores(self, model: nn.Module) -> dict[str, float]:
        """The four numbers notebook 09 compares: byte and exact accuracy on facts and on held-out sums."""
        return {f"{domain}_{kind}": getattr(self.accuracy(model, domain), kind)
                for domain in self.domains for kind in ("byte", "exact")}

    def fact_share_by_expert(self, model: nn.Module, *, layer: int = -1) -> torch.Tensor:
        """(n_experts,) the share of each expert's tokens that come from facts, when the validation records (every
        fact, every held-out sum: equally many here) are routed through MoE layer ``layer``. NaN for an idle expert."""
        if not model.moe_layers():
            raise ValueError("fact_share_by_expert needs an MoE model; this one has no routed layer")
        facts, sums = self.rows["facts", "val"], self.rows["sums", "val"]
        routing = _evaluate(model, torch.cat([facts, sums]), return_aux=True).routing[layer]
        n_experts = routing.scores.shape[1]
        is_fact = torch.arange(len(facts) + len(sums)) < len(facts)  # (records,)
        is_fact = is_fact[:, None].expand(-1, facts.shape[1] - 1).reshape(-1, 1)  # (tokens, 1): one per position
        experts = routing.indices.cpu()  # (tokens, k)
        from_facts = torch.bincount(experts[is_fact.expand_as(experts)], minlength=n_experts)
        return from_facts / torch.bincount(experts.flatten(), minlength=n_experts)
