import json
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, strategies as st

from course_lib.maintainer import corpus as corpus_module
from course_lib.data import DATA_DIR, Corpus, decode, encode


def test_files_match_manifest():
    manifest = json.loads((DATA_DIR / "manifest.json").read_text())
    assert set(manifest["files"]) == {f"{d}.{s}.txt" for d in corpus_module.DOMAINS for s in ("train", "val")}
    for name, entry in manifest["files"].items():
        path = DATA_DIR / "corpus" / name
        assert path.stat().st_size == entry["bytes"], name
        assert corpus_module.sha256_of(path) == entry["sha256"], f"{name} differs from data/manifest.json"


def test_readme_table_matches_manifest():
    """data/README.md states the same sizes and SHA-256 as the machine-readable manifest."""
    manifest = json.loads((DATA_DIR / "manifest.json").read_text())
    readme = (DATA_DIR / "README.md").read_text()
    for name, entry in manifest["files"].items():
        row = re.search(rf"\|\s*`?{re.escape(name)}`?\s*\|[^\n]*", readme)
        assert row, f"{name} missing from data/README.md"
        assert f"{entry['bytes']:,}" in row.group(0) and entry["sha256"] in row.group(0), name


def test_domains_are_a_few_hundred_kb_and_split_about_nine_to_one():
    manifest = json.loads((DATA_DIR / "manifest.json").read_text())["files"]
    for domain in corpus_module.DOMAINS:
        train, val = manifest[f"{domain}.train.txt"]["bytes"], manifest[f"{domain}.val.txt"]["bytes"]
        assert 200_000 <= train + val <= 600_000
        assert 0.07 <= val / (train + val) <= 0.13


def test_split_is_deterministic_and_disjoint():
    text = "".join(f"line {i}\n" for i in range(5000))
    train, val = corpus_module.split_train_val(text)
    assert (train, val) == corpus_module.split_train_val(text)
    assert len(train) + len(val) == len(text)
    assert not set(train.splitlines()) & set(val.splitlines())


def test_arithmetic_is_correct():
    for line in corpus_module.make_arithmetic()[:20_000].splitlines():
        if " remainder " in line:
            a, b, q, r = map(int, re.match(r"(\d+) / (\d+) = (\d+) remainder (\d+)", line).groups())
            assert b * q + r == a and 0 <= r < b
        else:
            for left, right in zip(line.split(" = "), line.split(" = ")[1:]):
                assert eval(left) == eval(right), line  # only digits and + - * ( ): safe to eval


def test_rebuild_reproduces_committed_files_with_same_python(tmp_path):
    manifest = json.loads((DATA_DIR / "manifest.json").read_text())
    import platform
    if manifest["built_with"] != f"Python {platform.python_version()} ({platform.python_implementation()})":
        pytest.skip(f"corpus built with {manifest['built_with']}; prose and code bytes differ across versions")
    rebuilt = corpus_module.build(tmp_path)
    assert {n: e["sha256"] for n, e in rebuilt["files"].items()} == {n: e["sha256"] for n, e in manifest["files"].items()}


@given(st.text())
def test_tokenizer_round_trip(text):
    tokens = encode(text)
    assert tokens.dtype == torch.long and (tokens.numel() == 0 or int(tokens.max()) < 256)
    assert decode(tokens) == text


def test_batches_know_their_domain(corpus):
    generator = torch.Generator().manual_seed(0)
    batch = corpus.get_batch("train", batch_size=64, seq_len=16, generator=generator)
    assert batch.inputs.shape == batch.targets.shape == (64, 16)
    assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])
    for row, domain_id in zip(batch.inputs, batch.domains.tolist()):
        haystack = bytes(corpus.texts[corpus.domains[domain_id], "train"].tolist())
        assert bytes(row.tolist()) in haystack
    assert set(batch.domains.tolist()) == {0, 1, 2}


def test_same_generator_state_same_batches(corpus):
    a = corpus.get_batch("val", batch_size=4, seq_len=8, generator=torch.Generator().manual_seed(3))
    b = corpus.get_batch("val", batch_size=4, seq_len=8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.domains, b.domains)


def test_missing_corpus_file_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m course_lib.maintainer.corpus"):
        Corpus(tmp_path)


def test_bad_batch_arguments(corpus):
    generator = torch.Generator()
    with pytest.raises(ValueError, match="split"):
        corpus.get_batch("test", batch_size=1, seq_len=4, generator=generator)
    with pytest.raises(ValueError, match="batch_size"):
        corpus.get_batch("train", batch_size=0, seq_len=4, generator=generator)
    with pytest.raises(ValueError, match="domain"):
        corpus.get_batch("train", batch_size=1, seq_len=4, generator=generator, domain="poetry")


def test_unigram_baseline_is_between_perfect_and_uniform(corpus):
    import math
    assert 2.0 < corpus.unigram_loss() < math.log(256)
