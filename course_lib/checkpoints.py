"""Checkpoints: safetensors files (never pickle), written atomically, verified by a checksum on load.

``payload_sha256`` and ``atomic_write`` are shared with the release format of course_lib.open_weights.
Taught in notebook 01 (saving and resuming) and notebook 07 (why not pickle; the file format by hand).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .hardware import pick_device
from .config import ModelConfig
from .model import build_model
from .transformer import Transformer

CHECKPOINT_FORMAT = "course-checkpoint-v1"


def payload_sha256(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state as CPU tensors that own their memory (tied weights become separate copies)."""
    return {name: value.detach().cpu().clone().contiguous() for name, value in model.state_dict().items()}


def config_differences(saved: dict, current: dict) -> list[tuple[str, object, object]]:
    """(field, saved value, current value) for every field where two ModelConfig dicts differ."""
    return [(k, saved.get(k), current.get(k)) for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash or error during ``write`` leaves the previous file untouched: the rename is atomic on POSIX and Windows.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(path: str | Path, model: nn.Module, *, optimizer: torch.optim.Optimizer | None = None,
                    generator: torch.Generator | None = None, step: int = 0, history: dict | None = None,
                    train_config: dict | None = None) -> None:
    """Model, optimizer state, RNG states, step, history and training config in one safetensors file."""
    tensors = {f"model.{k}": v for k, v in state_tensors(model).items()}
    metadata = {"format": CHECKPOINT_FORMAT, "step": str(step)}
    if isinstance(model, Transformer):
        metadata["model_config"] = json.dumps(model.config.to_dict())
    if optimizer is not None:
        state = optimizer.state_dict()
        for index, param_state in state["state"].items():
            for key, value in param_state.items():
                tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
        metadata["optimizer_param_groups"] = json.dumps(state["param_groups"])
    if generator is not None:
        tensors["rng.data"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if history is not None:
        metadata["history"] = json.dumps(history)
    if train_config is not None:
        metadata["train_config"] = json.dumps(train_config)
    metadata["payload_sha256"] = payload_sha256(tensors)
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a checkpoint, after checking that it is complete and unmodified."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}. Train first, or pass the path of an existing checkpoint.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"Checkpoint {path} is truncated or corrupted ({error}). Delete it and retrain, "
                         f"or resume from an earlier checkpoint.") from error
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a course checkpoint (format {metadata.get('format')!r}, expected {CHECKPOINT_FORMAT!r}).")
    if payload_sha256(tensors) != metadata.get("payload_sha256"):
        raise ValueError(f"Checkpoint {path} is corrupted: its tensors do not match the checksum saved with them. "
                         f"Delete it and retrain, or resume from an earlier checkpoint.")
    return tensors, metadata


def load_checkpoint(path: str | Path, model: nn.Module, *, optimizer: torch.optim.Optimizer | None = None,
                    generator: torch.Generator | None = None) -> tuple[int, dict]:
    """Restore a checkpoint into ``model`` (and optimizer, generator, torch RNG); return (step, history dict)."""
    tensors, metadata = read_checkpoint(path)
    if isinstance(model, Transformer) and "model_config" in metadata:
        differences = [f"{k}: checkpoint {a!r} vs model {b!r}"
                       for k, a, b in config_differences(json.loads(metadata["model_config"]), model.config.to_dict())]
        if differences:
            raise ValueError(f"Checkpoint {path} was saved from a different model config ({'; '.join(differences)}). "
                             f"Build the model with the checkpoint's config: load_model({str(path)!r}).")
    model_state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(model_state)
    if optimizer is not None:
        state: dict = {}
        for name, value in tensors.items():
            if name.startswith("optim."):
                _, index, key = name.split(".", 2)
                state.setdefault(int(index), {})[key] = value
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["optimizer_param_groups"])})
    if generator is not None:  # resuming: replay the same batches and the same random draws
        generator.set_state(tensors["rng.data"])
        torch.set_rng_state(tensors["rng.torch"])
    return int(metadata["step"]), json.loads(metadata.get("history", "{}"))


def load_model(path: str | Path, *, device: str | torch.device | None = None) -> Transformer:
    """Rebuild a Transformer from a checkpoint saved by ``train`` or ``save_checkpoint``."""
    _, metadata = read_checkpoint(path)
    model = build_model(ModelConfig(**json.loads(metadata["model_config"])))
    load_checkpoint(path, model)
    return model.to(pick_device(device))
