"""Conclusions that hold over seeds: run named experiments with several seeds and summarise them as plain data.

A single training run is one draw: another seed, or the same seed on another CPU (other kernels, other rounding),
gives other numbers. So every comparison in the course runs each configuration with at least 3 seeds and asserts
only what holds across them: for example that *every* seed of one beats *every* seed of the other, or that the
mean gap's 95% confidence interval (Student's t: with 3 seeds, about ±4.3 standard errors) excludes zero.
``run_seeds`` trains (or loads from the cache) and summarises;
``compare`` states the gap between two summaries.

Sweeps too heavy to run live are computed once by ``python -m course_lib.seeds NAME ... --seeds 0 1 2`` into
``data/results/seed_sweeps.json`` with their provenance (torch version, CPU, date, command); a notebook shows
them, runs one seed live and checks that it agrees. Used from notebook 04 on.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .balancing import global_load, layer_max_violation
from .data import DATA_DIR
from .experiments import get_experiment, run_experiment
from .train import workshop_mode

SWEEP_FILE = DATA_DIR / "results" / "seed_sweeps.json"
# Student's t quantiles for two-sided 95% and 99% intervals, by degrees of freedom (seeds - 1)
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
T_99 = {1: 63.657, 2: 9.925, 3: 5.841, 4: 4.604, 5: 4.032, 6: 3.707, 7: 3.499, 8: 3.355, 9: 3.250}


@dataclass
class SeedSummary:
    """One configuration's metric over seeds (final validation loss unless stated)."""
    name: str
    seeds: list[int]
    values: list[float]

    def __post_init__(self):
        if len(self.seeds) != len(self.values) or len(self.values) < 2:
            raise ValueError(f"{self.name}: need one value per seed and at least 2 seeds, got {self.seeds} / {self.values}")

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1): the seed-to-seed spread."""
        return statistics.stdev(self.values)

    @property
    def standard_error(self) -> float:
        return self.std / math.sqrt(len(self.values))

    def prediction_interval(self) -> tuple[float, float]:
        """Where 99% of new runs of this configuration (another seed, another CPU) should fall: mean ± t·sd·√(1+1/n).

        With few seeds it is wide, as it should be: three draws say little about a fourth.
        """
        n = len(self.values)
        if n - 1 not in T_99:
            raise ValueError(f"prediction_interval supports 2 to {max(T_99) + 1} seeds, got {n}")
        half = T_99[n - 1] * self.std * math.sqrt(1 + 1 / n)
        return self.mean - half, self.mean + half

    def __str__(self) -> str:
        return (f"{self.name}: {self.mean:.4f} ± {self.std:.4f} (mean ± sd over seeds {self.seeds}: "
                f"{', '.join(f'{v:.4f}' for v in self.values)})")


@dataclass
class Comparison:
    """b minus a: positive when b's value (a loss) is higher, i.e. a is better."""
    gap: float  # mean(b) - mean(a)
    standard_error: float  # of the gap
    separated: bool  # every seed of a is below every seed of b, or every one above
    degrees_of_freedom: int  # for Student's t: seeds - 1 (the smaller group's, unpaired: conservative)

    @property
    def z(self) -> float:
        """The gap in standard errors."""
        return self.gap / self.standard_error if self.standard_error > 0 else math.copysign(math.inf, self.gap)

    def interval(self) -> tuple[float, float]:
        """The gap's 95% confidence interval: gap ± t · standard error."""
        half = T_95[self.degrees_of_freedom] * self.standard_error
        return self.gap - half, self.gap + half

    def resolved(self) -> bool:
        """The 95% interval excludes zero: a difference these seeds can tell from noise (3 seeds: |z| > 4.3)."""
        low, high = self.interval()
        return low > 0 or high < 0


def compare(a: SeedSummary, b: SeedSummary, *, paired: bool = False) -> Comparison:
    """The gap mean(b) - mean(a) and its standard error.

    paired: the runs of a and b with the same seed saw the same data (in the course a seed fixes the batch order
    for every model), so compare seed by seed: the standard error comes from the per-seed differences, and the
    part of the noise that the shared data causes cancels.
    """
    separated = max(a.values) < min(b.values) or min(a.values) > max(b.values)
    if not paired:
        return Comparison(b.mean - a.mean, math.hypot(a.standard_error, b.standard_error), separated,
                          min(len(a.values), len(b.values)) - 1)
    if a.seeds != b.seeds:
        raise ValueError(f"a paired comparison needs the same seeds, got {a.seeds} and {b.seeds}")
    differences = SeedSummary(f"{b.name} - {a.name}", a.seeds, [y - x for x, y in zip(a.values, b.values)])
    return Comparison(differences.mean, differences.standard_error, separated, len(differences.values) - 1)


def run_metrics(name: str, seed: int, *, progress: bool = False) -> dict[str, float]:
    """Train (or load from the cache) one registered run; return its final validation loss (``val_loss``); for an
    MoE, how balanced it ended (notebook 04's MaxVio over a fixed validation set, and MaxVio_batch averaged over the
    last 100 steps); when its training data scores models (notebook 09's facts and sums), those scores."""
    experiment = get_experiment(name)
    data = experiment.dataset()
    run = run_experiment(experiment, seed=seed, corpus=data, progress=progress)
    metrics = {"val_loss": run.history.val_loss[-1]}
    if run.model.moe_layers():
        validation = data.eval_batches(n_batches=12, batch_size=16, seq_len=experiment.train.seq_len, seed=99)
        metrics["max_violation_global"] = layer_max_violation(global_load(run.model, validation))
        metrics["max_violation_late"] = statistics.fmean(run.history.extra["max_violation_batch"][-100:])
    return metrics | (data.scores(run.model) if hasattr(data, "scores") else {})


def run_seeds(names: list[str], seeds: list[int], *, metric: str = "val_loss",
              progress: bool = False) -> dict[str, SeedSummary]:
    """Each registered experiment over ``seeds``, summarised by ``metric`` (a key of ``run_metrics``)."""
    return {name: SeedSummary(name, list(seeds), [run_metrics(name, seed, progress=progress)[metric] for seed in seeds])
            for name in names}


# ---- committed sweeps -----------------------------------------------------------------------------------------

def provenance() -> dict:
    return {"torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "command": "python -m course_lib.seeds " + " ".join(sys.argv[1:]),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "date": datetime.date.today().isoformat()}


def load_sweeps(path: Path = SWEEP_FILE, *, metric: str = "val_loss") -> dict[str, SeedSummary]:
    """The committed sweeps as SeedSummary objects of ``metric`` (provenance: ``json.loads(path.read_text())``)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: restore it with `git checkout -- data/results` or recompute it "
                                f"with `python -m course_lib.seeds NAME ... --seeds 0 1 2`")
    entries = json.loads(path.read_text())["sweeps"]
    return {name: SeedSummary(name, entry["seeds"], entry["metrics"][metric] if metric != "val_loss" else entry["val_loss"])
            for name, entry in entries.items() if metric == "val_loss" or metric in entry.get("metrics", {})}


def record_sweeps(names: list[str], seeds: list[int], *, path: Path = SWEEP_FILE) -> dict[str, SeedSummary]:
    """Run the sweeps and add them to the committed file, each entry with its provenance and config."""
    if workshop_mode():
        raise RuntimeError("refusing to record sweeps in workshop mode (shortened runs): unset COURSE_WORKSHOP")
    saved = json.loads(path.read_text()) if path.is_file() else {"about": __doc__.split("\n\n")[2], "sweeps": {}}
    summaries = {}
    for name in names:
        runs = [run_metrics(name, seed, progress=True) for seed in seeds]
        summaries[name] = SeedSummary(name, list(seeds), [run["val_loss"] for run in runs])
        experiment = get_experiment(name)
        saved["sweeps"][name] = {"seeds": list(seeds), "val_loss": summaries[name].values, "provenance": provenance(),
                                 "model": experiment.model.to_dict(), "train": asdict(experiment.train),
                                 "balance": experiment.balance.to_dict() if experiment.balance else None}
        if len(runs[0]) > 1:  # the data's own scores, one list per metric
            saved["sweeps"][name]["metrics"] = {key: [run[key] for run in runs] for key in runs[0] if key != "val_loss"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
    return summaries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run registered experiments over seeds into " + str(SWEEP_FILE))
    parser.add_argument("names", nargs="+", help="experiment names (python -m course_lib.experiments lists them)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))  # the course's reference: 2 threads
    for summary in record_sweeps(args.names, args.seeds).values():
        print(summary)


if __name__ == "__main__":
    main()
