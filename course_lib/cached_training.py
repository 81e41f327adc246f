"""Train once, reuse everywhere: training runs cached by configuration, with the hooks an MoE model needs.

The cache lives in ``.cache/experiments/`` (or ``$COURSE_CACHE``), never committed. The key covers the model
config, the training config, the balancing, the training data's fingerprint and a fingerprint of the code that trains: the modules this one
imports, directly or not, read as syntax trees without docstrings. So a changed config or a changed training
module retrains, while editing a widget, a plot, a docstring or a comment does not. Training is seeded, so a
cached result is the result a fresh run would give. Named runs live in course_lib.experiments (notebook 02 on).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch.nn as nn

from .balancing import BalanceConfig, balance_losses, bias_updater, routing_recorder
from .checkpoints import load_checkpoint, read_checkpoint
from .config import DeepSeekConfig, ModelConfig
from .data import DATA_DIR, Corpus, TrainingData, sha256_of
from .hardware import pick_device, seed_everything
from .model import build_model
from .train import Callback, History, LossHook, TrainConfig, train
from .transformer import Transformer

CACHE_ENV = "COURSE_CACHE"
LIBRARY_DIR = Path(__file__).resolve().parent


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, LIBRARY_DIR.parent / ".cache")) / "experiments"


def training_hooks(model: nn.Module, config: TrainConfig,
                   balance: BalanceConfig | None = None) -> tuple[list[LossHook], list[Callback]]:
    """The loss hooks and callbacks for training ``model``: none for a dense model; for an MoE model a routing
    recorder, then the balance losses and bias updates of ``balance``; the weighted MTP loss when it has MTP."""
    losses: list[LossHook] = []
    callbacks: list[Callback] = []
    if model.moe_layers():
        callbacks.append(routing_recorder(every=config.record_every))
        if balance is not None:
            losses.append(balance_losses(balance))
            if balance.bias_update_rate > 0:
                callbacks.append(bias_updater(model, balance.bias_update_rate))
    if model.mtp is not None:
        weight = model.config.mtp_loss_weight
        losses.append(lambda output, batch: {"mtp_loss": weight * output.mtp_loss(batch.targets)})
    return losses, callbacks


def course_imports(path: Path) -> set[str]:
    """Names of the course_lib modules that ``path`` imports (relative imports, at any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.update([node.module] if node.module else [alias.name for alias in node.names])
    return {name.split(".")[0] for name in names}


def training_modules() -> list[str]:
    """This module and every course_lib module it imports, directly or not: the code that trains."""
    seen, todo = set(), [Path(__file__).stem]
    while todo:
        name = todo.pop()
        if name not in seen and (LIBRARY_DIR / f"{name}.py").is_file():
            seen.add(name)
            todo.extend(course_imports(LIBRARY_DIR / f"{name}.py"))
    return sorted(seen)


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return tree


def training_code_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in training_modules():
        tree = _without_docstrings(ast.parse((LIBRARY_DIR / f"{name}.py").read_text()))
        digest.update(name.encode() + ast.dump(tree).encode())  # no line numbers: comments and layout do not count
    return digest.hexdigest()[:16]


def experiment_key(model_config: ModelConfig | DeepSeekConfig, train_config: TrainConfig, balance: BalanceConfig | None = None, *,
                   data_fingerprint: str | None = None) -> str:
    """The cache key. data_fingerprint: the training data's ``fingerprint()`` (default: the committed corpus)."""
    description = {"model": model_config.to_dict(), "train": asdict(train_config),
                   "balance": balance.to_dict() if balance is not None else None, "code": training_code_fingerprint(),
                   "corpus": data_fingerprint or sha256_of(DATA_DIR / "manifest.json")}  # new data retrains too
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]


def train_cached(model_config: ModelConfig | DeepSeekConfig, train_config: TrainConfig, *, corpus: TrainingData | None = None,
                 balance: BalanceConfig | None = None, device=None,
                 progress: bool = True) -> tuple[Transformer, History, bool]:
    """Return (model, history, from_cache) for this configuration, training (seeded) only when not cached.

    The model is built with ``build_model`` after seeding with ``train_config.seed`` and trained with
    ``training_hooks``; it is returned on ``device`` (default: the course policy), cached or not.
    corpus: the training data (default: the committed Corpus); anything with its interface and a ``fingerprint()``.
    """
    device = pick_device(device)  # before the cache lookup: a device error must not pass for a damaged entry
    key = experiment_key(model_config, train_config, balance,
                         data_fingerprint=corpus.fingerprint() if corpus is not None else None)
    path = cache_dir() / f"{key}.safetensors"
    seed_everything(train_config.seed)
    model = build_model(model_config)
    if path.exists():
        try:
            read_checkpoint(path)
            _, history = load_checkpoint(path, model)
            return model.to(device), History(**history), True  # where a fresh run would train
        except ValueError:  # a damaged cache entry is simply retrained
            path.unlink()
    losses, callbacks = training_hooks(model, train_config, balance)
    history = train(model, corpus or Corpus(), train_config, device=device, losses=losses, callbacks=callbacks,
                    checkpoint_path=path, progress=progress)
    return model, history, False
