"""A CPU-only stand-in for a GPU's device checks, so a missing ``.to(model_device(model))`` fails in CI.

Taught in notebook 06; used by ``tests/test_device_contract.py`` on every public function that runs a model.

On a GPU, ``F.linear(cpu_input, cuda_weight)`` raises; on the CPU every tensor is on the same device, so nothing
can notice when a function forgets to move its inputs. ``StrictDevices`` restores the check: put the model on the
``meta`` device (shapes and dtypes, no data), call the function with inputs built the usual way (on the CPU), and
any torch operation that mixes tensors of two devices raises ``DeviceMismatch``, including the many that PyTorch
lets pass on meta (an embedding lookup with CPU indices, the course's SwiGLU layer on CPU activations). As on
CUDA, 0-dim CPU tensors and CPU index tensors (``x[idx]``) may mix, and ``.to``/``.copy_`` move data on purpose.

Meta tensors hold no values, so reading one (``.item()``, ``float()``, ``.tolist()``, ``.cpu()``) gives ones here
(False for booleans); ``bincount`` counts every element as 0, so an MoE's per-expert row counts add up; ``x[mask]``
and ``nonzero`` assume every element is selected. The code after such a read is checked too, although what it
computes is meaningless. ``torch._grouped_mm``'s meta kernel accepts only bf16 (it copies the fast CUDA kernel's
checks, while CUDA falls back to a loop for fp32), so its forward on meta is given the right shape here; its
backward cannot be, so training on meta needs another dispatch.
"""
from __future__ import annotations

import weakref

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves


class DeviceMismatch(RuntimeError):
    pass


_MOVES = {torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.cpu, torch.Tensor.__getitem__,
          torch.Tensor.__setitem__, torch.Tensor.index_put_, torch.Tensor.index_put,
          torch._has_compatible_shallow_copy_type}  # asked by Module.to before it moves a parameter
_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.__float__, torch.Tensor.__int__,
          torch.Tensor.__bool__}


def _checked_tensors(args, kwargs) -> list[torch.Tensor]:
    """The tensor arguments whose device must agree: 0-dim CPU tensors are scalars, allowed anywhere."""
    return [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
            and not (t.dim() == 0 and t.device.type == "cpu")]


def _stand_in_values(tensor: torch.Tensor):
    """Ones, which stay valid where code needs them to (probabilities for sampling, divisors); for a boolean,
    False, so that a validity check (``if (load <= 0).any(): raise``) does not fire on values that do not exist."""
    return torch.zeros(tensor.shape, dtype=torch.bool) if tensor.dtype == torch.bool else torch.ones(tensor.shape, dtype=tensor.dtype)


class StrictDevices(TorchFunctionMode):
    """Within this mode, an op on tensors of two devices raises DeviceMismatch; meta reads return zeros."""

    def __enter__(self):
        # x[mask] and nonzero on meta tensors: assume every element is selected (a shape, no data needed)
        self._nonzero_config = torch.fx.experimental._config.meta_nonzero_assume_all_nonzero
        torch.fx.experimental._config.meta_nonzero_assume_all_nonzero = True
        return super().__enter__()

    def __exit__(self, *exc):
        torch.fx.experimental._config.meta_nonzero_assume_all_nonzero = self._nonzero_config
        return super().__exit__(*exc)

    def __init__(self):
        super().__init__()
        self.ops_checked = 0
        self._values: dict[int, tuple[weakref.ref, torch.Tensor]] = {}  # stand-in values of some meta tensors

    def _stand_in(self, tensor: torch.Tensor) -> torch.Tensor:
        entry = self._values.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else _stand_in_values(tensor)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _MOVES:
            devices = {t.device for t in _checked_tensors(args, kwargs)}
            if len(devices) > 1:
                name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
                raise DeviceMismatch(f"{name} got tensors on {', '.join(sorted(map(str, devices)))}: "
                                     f"move the inputs to the model's device (course_lib.hardware.model_device)")
            self.ops_checked += 1
        receiver = args[0] if args else None
        if isinstance(receiver, torch.Tensor) and receiver.device.type == "meta":
            if func is torch._grouped_mm:  # (rows, d_in) x (groups, d_in, d_out) with offsets -> (rows, d_out)
                return torch.empty(receiver.shape[0], args[1].shape[-1], dtype=receiver.dtype, device="meta")
            if func in _READS:
                return func(self._stand_in(receiver), *args[1:], **kwargs)
            if func in (torch.Tensor.cpu, torch.Tensor.to) and _moves_to_cpu(func, args, kwargs):
                return self._stand_in(receiver)  # meta -> CPU
            if func in (torch.bincount, torch.Tensor.bincount):
                counts = torch.bincount(torch.zeros(receiver.numel(), dtype=torch.long), minlength=kwargs.get(
                    "minlength", args[2] if len(args) > 2 else 0))
                result = torch.empty(counts.shape, dtype=counts.dtype, device="meta")
                self._values[id(result)] = (weakref.ref(result), counts)
                return result
        return func(*args, **kwargs)


def _moves_to_cpu(func, args, kwargs) -> bool:
    if func is torch.Tensor.cpu:
        return True
    targets = [a for a in (*args[1:], kwargs.get("device")) if isinstance(a, (str, torch.device))]
    return any(torch.device(t).type == "cpu" for t in targets)
