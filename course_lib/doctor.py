"""Pre-flight check for a classroom machine: ``python -m course_lib.doctor``.

Prints one line per check and a summary; exits 1 if anything a notebook needs is broken, so an instructor
can run it on twenty laptops before the workshop. Also shown in notebook 00.
"""
from __future__ import annotations

import functools
import importlib
import json
import platform
import sys
import time
import statistics
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED_TORCH = "2.13.0"
PACKAGES = ("numpy", "matplotlib", "safetensors", "huggingface_hub", "tqdm", "ipywidgets", "jupyterlab", "ipykernel")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    notes: list[str] = field(default_factory=list)  # extra lines, printed whether it passed or not


def _check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", ok, platform.python_version(), "" if ok else "install Python 3.10 or newer")


def _check_torch() -> Check:
    try:
        import torch
    except ImportError:
        return Check("torch", False, "not installed", "pip install -r requirements.txt")
    version = torch.__version__.split("+")[0]
    ok = version == REQUIRED_TORCH
    return Check("torch", ok, torch.__version__, "" if ok else f"pip install torch=={REQUIRED_TORCH} (the tested version)")


def _check_package(name: str) -> Check:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return Check(name, False, "not installed", "pip install -r requirements.txt")
    return Check(name, True, getattr(module, "__version__", "installed"))


def _check_corpus() -> Check:
    from .data import sha256_of
    from .data import DATA_DIR

    manifest_path = DATA_DIR / "manifest.json"
    if not manifest_path.is_file():
        return Check("corpus", False, f"{manifest_path} missing", "git checkout -- data/")
    manifest = json.loads(manifest_path.read_text())
    bad = [name for name, entry in manifest["files"].items()
           if not (DATA_DIR / "corpus" / name).is_file() or sha256_of(DATA_DIR / "corpus" / name) != entry["sha256"]]
    if bad:
        return Check("corpus", False, f"missing or modified: {', '.join(bad)}", "git checkout -- data/")
    total = sum(entry["bytes"] for entry in manifest["files"].values())
    return Check("corpus", True, f"{len(manifest['files'])} files, {total / 1e3:.0f} KB, checksums match")


def _check_device() -> Check:
    from .hardware import _accelerator_type, pick_device

    try:
        device = pick_device()
    except ValueError as error:
        return Check("device", False, str(error), "unset COURSE_DEVICE or set it to 'cpu'")
    accelerator = _accelerator_type()
    return Check("device", True, f"course runs on {device}; accelerator present: {accelerator or 'none (CPU is fine)'}")


def _check_smoke() -> Check:
    """A tiny model trains for a few steps and its loss falls: the whole stack works."""
    import torch

    from .hardware import pick_device
    from .transformer import ModelConfig, Transformer

    device = pick_device()
    torch.manual_seed(0)
    model = Transformer(ModelConfig(context_length=32, d_model=32, n_layers=1, n_heads=2, ffn_hidden=64)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    inputs = torch.randint(256, (4, 32), device=device)
    started = time.perf_counter()
    losses = []
    for _ in range(20):
        loss = model.loss(inputs[:, :-1], inputs[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    ok = losses[-1] < losses[0]
    detail = f"20 steps in {time.perf_counter() - started:.2f}s, loss {losses[0]:.2f} -> {losses[-1]:.2f}"
    return Check("smoke test", ok, detail, "" if ok else "reinstall torch; report this output to your instructor")


def _check_matmul_speed() -> Check:
    """fp32 matmul throughput, so an instructor can spot a machine far slower than the timings assume."""
    import torch

    a, b = torch.randn(512, 512), torch.randn(512, 512)
    a @ b
    started = time.perf_counter()
    for _ in range(20):
        a @ b
    gflops = 20 * 2 * 512**3 / (time.perf_counter() - started) / 1e9
    ok = gflops > 20  # far below any laptop of the last decade: something is wrong (a busy or throttled machine)
    return Check("matmul speed", ok, f"{gflops:.0f} GFLOP/s fp32 ({torch.get_num_threads()} threads)",
                 "" if ok else "close other programs and run the doctor again; the running-time line below says "
                               "what to expect")


@functools.lru_cache(maxsize=None)  # measured once per session: notebook 00 shows the doctor and then charts it
def training_step_seconds(*, steps: int = 8) -> float:
    """Median time of one training step of notebook 01's dense model (batch 32 x 64 bytes, AdamW): the benchmark
    that the running-time estimates scale by (course_lib.course.REFERENCE_STEP_SECONDS on the reference machine)."""
    import torch

    from .model import build_model
    from .config import ModelConfig

    torch.manual_seed(0)
    model = build_model(ModelConfig())  # on the CPU: the course's default device, and what the times were measured on
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(256, (32, 65))
    times = []
    for step in range(steps + 2):  # two warm-up steps
        started = time.perf_counter()
        loss = model(tokens[:, :-1], targets=tokens[:, 1:], return_aux=True).language_model_loss(tokens[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 2:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _check_running_time() -> Check:
    """The expected cold running time of every notebook on this machine, and whether workshop mode is advised."""
    from .cached_training import cache_dir
    from .course import REFERENCE_STEP_SECONDS, WORKSHOP_ABOVE_MINUTES, running_time_estimate, workshop_recommended
    from .train import workshop_mode

    step = training_step_seconds()
    estimate = running_time_estimate(step, workshop=workshop_mode())
    total = sum(estimate.values())
    mode = "workshop mode" if workshop_mode() else "first run"
    per_notebook = [f"{notebook[:2]}: {_minutes(seconds)}" for notebook, seconds in estimate.items()]
    notes = ["per notebook  " + " · ".join(per_notebook[i:i + 5]) for i in range(0, len(per_notebook), 5)]
    cached = len(list(cache_dir().glob("*.safetensors"))) if cache_dir().is_dir() else 0
    if cached:
        notes.append(f"{cached} trained runs are in the cache: notebooks whose runs are cached take seconds")
    if workshop_recommended(step) and not workshop_mode():
        workshop_total = sum(running_time_estimate(step, workshop=True).values())
        notes.append(f"advice: the course would take more than {WORKSHOP_ABOVE_MINUTES} minutes of computing here. "
                     f"Best: a warm cache from your instructor (copy their .cache/ into the course folder; the "
                     f"notebooks then load their runs). Else COURSE_WORKSHOP=1 (about {_minutes(workshop_total)}: "
                     f"notebooks 04, 05, 08 and 09 keep their runs whole), and start long cells before reading")
    return Check("running time", True, f"about {_minutes(total)} for all notebooks ({mode}, in course order, empty "
                                       f"cache); benchmark step "
                                       f"{step * 1e3:.0f} ms (reference machine {REFERENCE_STEP_SECONDS * 1e3:.0f} ms)",
                 notes=notes)


def _check_workshop() -> Check:
    from .train import WORKSHOP_ENV, WORKSHOP_SCALE, workshop_mode

    if workshop_mode():
        return Check("workshop mode", True, f"on: the course's registered runs keep {WORKSHOP_SCALE:.0%} of their steps "
                                            f"(numbers will differ from the notebooks' text)")
    return Check("workshop mode", True, f"off ({WORKSHOP_ENV}=1 shortens training runs on slow machines)")


def run_checks() -> list[Check]:
    checks = [_check_python(), _check_torch()] + [_check_package(name) for name in PACKAGES]
    if not all(check.ok for check in checks[:2]):
        return checks
    for check in (_check_corpus, _check_device, _check_smoke, _check_matmul_speed, _check_running_time, _check_workshop):
        try:
            checks.append(check())
        except Exception as error:  # a pre-flight report must finish and say what broke
            checks.append(Check(check.__name__.removeprefix("_check_"), False, f"{type(error).__name__}: {error}",
                                "report this output to your instructor"))
    return checks


def report(checks: list[Check]) -> str:
    prefix, course = Path(sys.prefix).resolve(), Path(__file__).resolve().parent.parent
    where = (f"the course's {prefix.relative_to(course)}" if prefix.is_relative_to(course)
             else f"an environment outside the course folder ({prefix.name})")  # never a full path: outputs are shared
    lines = [f"course_lib doctor — {platform.system()} {platform.machine()}, Python from {where}"]
    for check in checks:
        lines.append(f"  [{'ok' if check.ok else 'FAIL':4s}] {check.name:13s} {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"         fix: {check.fix}")
        lines += [f"         {note}" for note in check.notes]
    failed = [c.name for c in checks if not c.ok]
    lines.append("All checks passed: this machine is ready for the course." if not failed
                 else f"{len(failed)} problem(s): {', '.join(failed)}.")
    return "\n".join(lines)


def main() -> int:
    checks = run_checks()
    print(report(checks))
    return 0 if all(check.ok for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
