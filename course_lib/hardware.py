"""Device, dtype and seed policy: the one place where the course decides where tensors live.

Taught in notebooks 00 (environment check) and 06 (hardware-agnostic compute).

Rules:
- CPU by default in tests and CI; ``auto`` picks an available accelerator (CUDA/ROCm, MPS, XPU, or an
  out-of-tree backend such as Ascend's ``npu`` that registers through PrivateUse1), else the CPU.
- The environment variable ``COURSE_DEVICE`` overrides the choice everywhere (``cpu``, ``cuda``, ``mps``...).
- Asking for a device that does not exist or is not available is an error that says what to do instead, and
  for a backend whose package is missing (Ascend's ``npu``, Intel's ``xpu``), which package to install.
- Whatever runs a model puts its inputs on ``model_device(model)``: the model decides, not the caller.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import random

import numpy as np
import torch
import torch.nn as nn

DEVICE_ENV_VAR = "COURSE_DEVICE"

# Device types a PyTorch build can know about. ROCm GPUs use "cuda" (PyTorch reuses the torch.cuda API for HIP).
KNOWN_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "npu", "hpu", "mtia", "meta")

# What a device type needs beyond the standard CPU wheel, for the error that says what to install.
BACKEND_PACKAGES = {
    "cuda": "a CUDA (NVIDIA) or ROCm (AMD) build of PyTorch and a GPU: see https://pytorch.org/get-started/locally/",
    "mps": "macOS on Apple silicon (the standard macOS wheel includes MPS)",
    "xpu": "PyTorch's XPU build and an Intel GPU: pip install torch --index-url https://download.pytorch.org/whl/xpu",
    "npu": "torch_npu, Ascend's PyTorch adapter (pip install torch-npu, matching your torch version, on a CPU build "
           "of torch), the CANN toolkit and an Ascend NPU",
}
# Out-of-tree backends that register a device type through PrivateUse1 when their package is imported.
PRIVATEUSE1_PACKAGES = {"npu": "torch_npu"}


def model_device(model: nn.Module) -> torch.device:
    """The device a model's weights live on: every course function that runs a model puts its inputs there.

    A model without parameters or buffers runs on the CPU; one whose tensors sit on several devices is an error
    (the course never splits a model; notebook 06 shows how parallelism does it on purpose)."""
    devices = {t.device for t in (*model.parameters(), *model.buffers())}
    if len(devices) > 1:
        raise ValueError(f"the model's weights are on several devices ({', '.join(sorted(map(str, devices)))}): "
                         f"move it to one with model.to(device)")
    return devices.pop() if devices else torch.device("cpu")


def _load_privateuse1_backend(device_type: str) -> None:
    """Import the package that registers ``device_type`` (``npu``: torch_npu), or say which one to install."""
    package = PRIVATEUSE1_PACKAGES[device_type]
    if hasattr(torch, device_type):
        return  # already imported and registered
    if importlib.util.find_spec(package) is None:
        raise ValueError(f"Device {device_type!r} needs {BACKEND_PACKAGES[device_type]}; {package} is not installed "
                         f"here. Use device='cpu', or device='auto' to take whatever accelerator is present.")
    try:
        importlib.import_module(package)  # registers the device type with PyTorch (PrivateUse1)
    except Exception as error:  # installed, but its native libraries or the vendor toolkit are not set up
        raise ValueError(f"{package} is installed but failed to import ({type(error).__name__}: {error}). It needs "
                         f"{BACKEND_PACKAGES[device_type]}: set up the toolkit's environment (for CANN, source its "
                         f"set_env.sh) and install the {package} version that matches torch {torch.__version__}, "
                         f"a CPU build.") from error


def _accelerator_type() -> str | None:
    """The available accelerator's device type, or None. Uses torch.accelerator where this PyTorch has it."""
    accelerator_api = getattr(torch, "accelerator", None)
    if accelerator_api is not None and accelerator_api.is_available():
        return accelerator_api.current_accelerator().type
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return "xpu"
    return None


def device_is_available(device_type: str) -> bool:
    """Whether this machine can run tensors of ``device_type`` right now."""
    if device_type == "cpu":
        return True
    if device_type == "cuda":
        return torch.cuda.is_available()
    if device_type == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    backend_module = getattr(torch, device_type, None)  # xpu, npu (after `import torch_npu`), ...
    is_available = getattr(backend_module, "is_available", None)
    return bool(is_available()) if callable(is_available) else False


def pick_device(name: str | torch.device | None = None) -> torch.device:
    """Resolve the device the course runs on.

    name: ``None`` reads ``$COURSE_DEVICE`` and falls back to ``"cpu"``; ``"auto"`` picks an available
    accelerator, else the CPU; anything else (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...) is checked.
    A ``torch.device`` is taken as it is: the caller already chose it.
    """
    if isinstance(name, torch.device):
        return name
    requested = name if name is not None else os.environ.get(DEVICE_ENV_VAR, "cpu")
    requested = requested.strip().lower()
    if requested == "auto":
        return torch.device(_accelerator_type() or "cpu")
    if requested.split(":")[0] in PRIVATEUSE1_PACKAGES:
        _load_privateuse1_backend(requested.split(":")[0])
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise ValueError(
            f"Unknown device {requested!r}. Use one of 'cpu', 'auto', {', '.join(repr(t) for t in KNOWN_DEVICE_TYPES[1:-1])}"
            f" (optionally with an index, e.g. 'cuda:0'); on AMD ROCm GPUs the device is still 'cuda'. "
            f"Set {DEVICE_ENV_VAR} or pass device=... to change it."
        ) from error
    if not device_is_available(device.type):
        needs = f" It needs {BACKEND_PACKAGES[device.type]}." if device.type in BACKEND_PACKAGES else ""
        raise ValueError(
            f"Device {requested!r} is not available on this machine (PyTorch {torch.__version__}).{needs} "
            f"Use device='cpu', or device='auto' to take whatever accelerator is present, "
            f"or unset {DEVICE_ENV_VAR}."
        )
    if device.index is not None and device.type != "cpu":
        count = getattr(torch, device.type).device_count()
        if device.index >= count:
            raise ValueError(f"Device {requested!r} does not exist: this machine has {count} {device.type} device(s).")
    return device


def autocast_dtype(device: torch.device) -> torch.dtype:
    """The low-precision dtype for autocast on ``device``: bf16 (fp16 is very slow on CPUs, see notebook 06)."""
    return torch.bfloat16


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh torch.Generator seeded the same, for data sampling."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
