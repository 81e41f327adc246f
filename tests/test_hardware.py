import pytest
import torch

from course_lib.hardware import device_is_available, pick_device, seed_everything


def test_cpu_by_default(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert pick_device() == torch.device("cpu")


def test_environment_variable_forces_device(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", " CPU ")
    assert pick_device() == torch.device("cpu")  # read, trimmed and lower-cased
    monkeypatch.setenv("COURSE_DEVICE", "auto")
    assert pick_device() == pick_device("auto")
    absent = next(t for t in ("mps", "xpu", "cuda") if not device_is_available(t))
    monkeypatch.setenv("COURSE_DEVICE", absent)
    with pytest.raises(ValueError, match=f"'{absent}' is not available"):
        pick_device()  # the variable decided, not the default


def test_auto_picks_accelerator_or_cpu():
    expected = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else torch.device("cpu")
    assert pick_device("auto").type == expected.type


def test_unknown_device_names_the_choices():
    with pytest.raises(ValueError, match="Unknown device 'gpu'.*'cuda'"):
        pick_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_device_says_what_to_do(monkeypatch):
    with pytest.raises(ValueError, match="not available.*device='cpu'"):
        pick_device("cuda")
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(ValueError, match="unset COURSE_DEVICE"):
        pick_device()


def test_seed_everything_reproduces():
    seed_everything(7)
    a = torch.randn(3)
    seed_everything(7)
    assert torch.equal(a, torch.randn(3))
    with pytest.raises(ValueError):
        seed_everything(-1)


def test_doctor_passes_here():
    from course_lib.doctor import report, run_checks

    checks = run_checks()
    assert all(c.ok for c in checks), report(checks)


def test_doctor_estimates_every_notebook_and_advises_workshop_mode_on_a_slow_machine(monkeypatch):
    from course_lib import doctor
    from course_lib.course import COURSE_MAP, REFERENCE_STEP_SECONDS

    monkeypatch.delenv("COURSE_WORKSHOP", raising=False)
    monkeypatch.setattr(doctor, "training_step_seconds", lambda: REFERENCE_STEP_SECONDS)  # the reference machine
    fast = doctor.report([doctor._check_running_time()])
    assert all(f"{lesson.notebook[:2]}: " in fast for lesson in COURSE_MAP) and "advice" not in fast
    monkeypatch.setattr(doctor, "training_step_seconds", lambda: 3 * REFERENCE_STEP_SECONDS)  # three times slower
    slow = doctor.report([doctor._check_running_time()])
    assert "advice" in slow and "COURSE_WORKSHOP=1" in slow
