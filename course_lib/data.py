"""Byte-level tokenizer and batching over the three-domain course corpus.

Every sequence in a batch comes with the id of the domain it was cut from, so that later notebooks can ask
which experts each domain uses (notebook 05). Taught in notebook 01.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

VOCAB_SIZE = 256  # one token per byte: no tokenizer to train, every text round-trips
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DOMAINS = ("prose", "code", "arithmetic")  # the corpus's domains, built by course_lib.maintainer.corpus


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (corpus files here, model weights in course_lib.open_weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encode(text: str) -> torch.Tensor:
    """UTF-8 bytes of ``text`` as a 1-D long tensor of token ids in [0, 256)."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


def decode(tokens: torch.Tensor | list[int]) -> str:
    """Token ids back to text; a byte sequence cut inside a multi-byte character shows U+FFFD there."""
    ids = tokens.tolist() if isinstance(tokens, torch.Tensor) else list(tokens)
    return bytes(ids).decode("utf-8", errors="replace")


@dataclass
class Batch:
    inputs: torch.Tensor   # (batch, seq_len) token ids
    targets: torch.Tensor  # (batch, seq_len) the next token of each input position
    domains: torch.Tensor  # (batch,) index into DOMAINS of the text each row was cut from

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.inputs.to(device), self.targets.to(device), self.domains.to(device))


class TrainingData(Protocol):
    """What ``course_lib.train.train`` and the run cache read from their data: the Corpus, or notebook 09's
    ``memorisation.FactsAndSums``."""
    domains: tuple[str, ...]

    def get_batch(self, split: str, *, batch_size: int, seq_len: int, generator: torch.Generator,
                  domain: str | None = None) -> Batch: ...

    def eval_batches(self, *, n_batches: int, batch_size: int, seq_len: int, seed: int = 1234) -> list[Batch]: ...

    def fingerprint(self) -> str: ...


class Corpus:
    """The committed corpus, one uint8 tensor per (domain, split)."""

    def __init__(self, data_dir: Path | str = DATA_DIR):
        corpus_dir = Path(data_dir) / "corpus"
        self.domains = DOMAINS
        self.texts: dict[tuple[str, str], torch.Tensor] = {}
        for domain in DOMAINS:
            for split in ("train", "val"):
                path = corpus_dir / f"{domain}.{split}.txt"
                if not path.is_file():
                    raise FileNotFoundError(
                        f"Corpus file {path} is missing. Restore it with `git checkout -- data/` "
                        f"or rebuild the corpus with `python -m course_lib.maintainer.corpus`."
                    )
                self.texts[domain, split] = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)

    def manifest(self) -> dict:
        return json.loads((DATA_DIR / "manifest.json").read_text())

    def fingerprint(self) -> str:
        """Identifies the training data for the run cache: a rebuilt corpus gets a new manifest, so runs retrain."""
        return sha256_of(DATA_DIR / "manifest.json")

    def size(self, domain: str, split: str) -> int:
        return self.texts[domain, split].numel()

    def get_batch(self, split: str, *, batch_size: int, seq_len: int, generator: torch.Generator,
                  domain: str | None = None) -> Batch:
        """Random windows of ``seq_len + 1`` bytes; the domain of each row is uniform unless ``domain`` is set.

        generator: the only source of randomness, so a saved generator state replays the same batches.
        """
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size} and {seq_len}")
        if domain is not None and domain not in DOMAINS:
            raise ValueError(f"unknown domain {domain!r}; choose from {DOMAINS}")
        if domain is None:
            domain_ids = torch.randint(len(DOMAINS), (batch_size,), generator=generator)
        else:
            domain_ids = torch.full((batch_size,), DOMAINS.index(domain))
        rows = []
        for domain_id in domain_ids.tolist():
            text = self.texts[DOMAINS[domain_id], split]
            start = int(torch.randint(text.numel() - seq_len - 1, (1,), generator=generator))
            rows.append(text[start:start + seq_len + 1])
        windows = torch.stack(rows).long()  # (batch, seq_len + 1)
        return Batch(windows[:, :-1], windows[:, 1:], domain_ids)

    def eval_batches(self, *, n_batches: int, batch_size: int, seq_len: int, seed: int = 1234) -> list[Batch]:
        """A fixed validation set: the same windows every call, balanced over domains."""
        generator = torch.Generator().manual_seed(seed)
        return [self.get_batch("val", batch_size=batch_size, seq_len=seq_len, generator=generator,
                               domain=DOMAINS[i % len(DOMAINS)]) for i in range(n_batches)]

    def unigram_loss(self, split: str = "val") -> float:
        """Cross-entropy (nats/byte) of the best context-free model: byte frequencies from the training split."""
        train = torch.cat([self.texts[d, "train"] for d in DOMAINS]).long()
        probs = torch.bincount(train, minlength=VOCAB_SIZE).double().add(1.0)  # add-one: no byte has p = 0
        probs /= probs.sum()
        target = torch.cat([self.texts[d, split] for d in DOMAINS]).long()
        return float(-probs.log()[target].mean())
