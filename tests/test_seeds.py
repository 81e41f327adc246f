"""The seeds helper: summaries, comparisons, and the committed sweeps' agreement with the registry."""
import json
import math

import pytest

from course_lib import seeds
from course_lib.experiments import get_experiment
from course_lib.seeds import SeedSummary, compare


def test_summary_statistics():
    summary = SeedSummary("x", [0, 1, 2], [2.0, 2.2, 2.4])
    assert summary.mean == pytest.approx(2.2) and summary.std == pytest.approx(0.2)
    assert summary.standard_error == pytest.approx(0.2 / math.sqrt(3))
    low, high = summary.prediction_interval()
    assert low == pytest.approx(2.2 - 9.925 * 0.2 * math.sqrt(4 / 3))
    assert low < min(summary.values) and high > max(summary.values)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        SeedSummary("x", [0], [2.0])


def test_compare_separates_resolves_and_signs():
    better, worse = SeedSummary("a", [0, 1, 2], [2.00, 2.01, 2.02]), SeedSummary("b", [0, 1, 2], [2.10, 2.11, 2.12])
    result = compare(better, worse)
    assert result.gap == pytest.approx(0.10) and result.separated and result.resolved() and result.z > 4.303
    low, high = result.interval()
    assert low == pytest.approx(0.10 - 4.303 * result.standard_error) and high > low > 0
    barely = SeedSummary("d", [0, 1, 2], [2.00 + 0.0195, 2.01 + 0.0195, 2.02 + 0.0195])  # z about 2.4: > 2 SE, not resolved
    assert 2 < compare(better, barely).z < 4.303 and not compare(better, barely).resolved()
    overlapping = SeedSummary("c", [0, 1, 2], [1.95, 2.05, 2.15])
    assert not compare(better, overlapping).separated and not compare(better, overlapping).resolved()


def test_paired_comparison_cancels_the_shared_noise():
    # seed 1 was a hard data order for both models: unpaired the gap drowns in it, paired it is resolved
    a = SeedSummary("a", [0, 1, 2], [2.00, 2.30, 2.10])
    b = SeedSummary("b", [0, 1, 2], [2.05, 2.36, 2.14])
    assert not compare(a, b).resolved() and compare(a, b, paired=True).resolved()
    assert compare(a, b, paired=True).gap == pytest.approx(0.05)
    with pytest.raises(ValueError, match="same seeds"):
        compare(a, SeedSummary("c", [3, 4, 5], [2.0, 2.1, 2.2]), paired=True)


def test_recording_is_refused_in_workshop_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_WORKSHOP", "1")
    with pytest.raises(RuntimeError, match="workshop mode"):
        seeds.record_sweeps(["dense"], [0, 1], path=tmp_path / "s.json")


def test_missing_sweep_file_says_how_to_restore(tmp_path):
    with pytest.raises(FileNotFoundError, match="git checkout -- data/results"):
        seeds.load_sweeps(tmp_path / "absent.json")


def test_committed_sweeps_match_the_registry():
    """A sweep is evidence only for the configuration that produced it: a changed registry entry needs a rerun."""
    entries = json.loads(seeds.SWEEP_FILE.read_text())["sweeps"]
    assert len(entries) >= 4
    for name, entry in entries.items():
        experiment = get_experiment(name)
        assert entry["model"] == experiment.model.to_dict(), f"{name}: model config changed since the sweep"
        assert entry["balance"] == (experiment.balance.to_dict() if experiment.balance else None), name
        assert entry["train"]["steps"] == experiment.train.steps and len(entry["seeds"]) >= 3, name
        assert {"torch", "cpu", "date"} <= set(entry["provenance"]), name
