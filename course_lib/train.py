"""The training loop: AdamW, warm-up + cosine schedule, clipping, periodic validation, checkpoints.

The loop knows nothing about experts. Each step it calls ``model(inputs, targets=..., return_aux=True)``, takes
the language-model loss from the returned ModelOutput, and lets hooks do the rest: ``losses`` add named terms
(balance losses, the MTP loss), ``callbacks`` run after each optimizer step (bias updates, routing records,
live plots, a Stop button). ``course_lib.cached_training.training_hooks`` composes the usual ones for a model.
Workshop mode is ``workshop_scaled(config)``, a function of the config. Taught in notebook 01.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import load_checkpoint, save_checkpoint
from .data import Batch, TrainingData
from .hardware import model_device, pick_device
from .transformer import ModelOutput


@dataclass
class TrainConfig:
    steps: int = 700
    batch_size: int = 32
    seq_len: int = 64
    lr: float = 6e-3  # peak learning rate, reached after the warm-up
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio
    warmup_steps: int = 30
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100  # validate every this many steps and at the last step
    eval_batches: int = 6
    checkpoint_every: int = 0  # 0: only at the end (when a checkpoint path is given)
    record_every: int = 25  # MoE models: snapshot per-layer routing statistics this often (routing_recorder)
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "seq_len", "eval_every", "eval_batches", "record_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "grad_clip", "warmup_steps", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")


WORKSHOP_ENV = "COURSE_WORKSHOP"
WORKSHOP_SCALE = 0.4  # the share of training steps kept in workshop mode, unless a run asks for more


def workshop_mode() -> bool:
    """True when COURSE_WORKSHOP is set (and not 0): for slow classroom machines, training runs are shortened."""
    return os.environ.get(WORKSHOP_ENV, "0") not in ("", "0")


def workshop_scaled(config: TrainConfig, *, min_steps: int = 20, enabled: bool | None = None) -> TrainConfig:
    """The run as workshop mode trains it: ``WORKSHOP_SCALE`` of the steps, never fewer than ``min_steps``.

    Every count shrinks alike, so the schedule keeps its shape. enabled: default ``workshop_mode()``; when
    off, or when the run is already that short, the config comes back unchanged (the same object).
    """
    if not (workshop_mode() if enabled is None else enabled):
        return config
    shortened = min(config.steps, max(min_steps, round(config.steps * WORKSHOP_SCALE)))
    if shortened == config.steps:
        return config
    scale = shortened / config.steps
    counts = {name: max(1 if getattr(config, name) else 0, round(getattr(config, name) * scale))
              for name in ("warmup_steps", "eval_every", "record_every", "checkpoint_every")}
    return replace(config, steps=shortened, **counts)


@dataclass
class History:
    """Everything the loop measured, as plain lists ready for plotting."""
    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)  # one list per extra loss term, per step
    eval_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_loss_by_domain: list[dict[str, float]] = field(default_factory=list)
    routing: list[dict] = field(default_factory=list)  # MoE models: {"step", per-layer "load", "max_violation", ...}
    seconds: float = 0.0  # wall-clock training time, evaluation included

    def to_dict(self) -> dict:
        return asdict(self)


class StopTraining(Exception):
    """Raise from a callback to end training after the current step (the widgets' Stop button does)."""


@dataclass
class StepInfo:
    step: int  # steps completed
    model: nn.Module
    batch: Batch
    output: ModelOutput  # what this step's forward pass computed (routing per MoE layer, ...)
    loss: float  # the language-model loss
    history: History


LossHook = Callable[[ModelOutput, Batch], dict[str, torch.Tensor]]  # named, already-weighted terms to add
Callback = Callable[[StepInfo], None]


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then a cosine to ``lr * min_lr_ratio`` at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (norm gains and biases are left alone, as in nanoGPT)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))


@torch.no_grad()
def evaluate(model: nn.Module, batches: list[Batch], domains: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """Mean validation loss and the mean loss of each domain's rows."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    total, count = {d: 0.0 for d in domains}, {d: 0 for d in domains}
    for batch in batches:
        batch = batch.to(device)
        logits = model(batch.inputs)
        per_row = F.cross_entropy(logits.transpose(1, 2), batch.targets, reduction="none").mean(1)  # (batch,)
        for domain_id, loss in zip(batch.domains.tolist(), per_row.tolist()):
            total[domains[domain_id]] += loss
            count[domains[domain_id]] += 1
    model.train(was_training)
    by_domain = {d: total[d] / count[d] for d in domains if count[d]}
    return sum(total.values()) / sum(count.values()), by_domain


def train(model: nn.Module, corpus: TrainingData, config: TrainConfig, *, device: str | torch.device | None = None,
          losses: Sequence[LossHook] = (), callbacks: Sequence[Callback] = (),
          checkpoint_path: str | Path | None = None, resume: bool = False, progress: bool = True) -> History:
    """Train ``model`` on ``corpus`` and return its History.

    device: where to train (default: the course policy, see course_lib.hardware.pick_device).
    losses: called after each forward pass with (ModelOutput, batch); each returns named, already-weighted terms
        that are added to the loss and logged in ``history.extra`` (balance losses, the MTP loss).
    callbacks: called in order after each optimizer step (and after that step's validation) with a StepInfo;
        raise StopTraining to stop early. For MoE models, see course_lib.cached_training.training_hooks.
    checkpoint_path: save here (atomically) every ``checkpoint_every`` steps and at the end.
    resume: continue from ``checkpoint_path`` if it exists; the result is bit-for-bit an uninterrupted run.
    """
    device = pick_device(device)
    model.to(device).train()
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(config.seed)
    history, start_step = History(), 0
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        start_step, saved = load_checkpoint(checkpoint_path, model, optimizer=optimizer, generator=generator)
        history = History(**saved)
    eval_set = corpus.eval_batches(n_batches=config.eval_batches, batch_size=config.batch_size, seq_len=config.seq_len)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.steps, initial=start_step, desc="training", leave=False, mininterval=1.0)
    started = time.perf_counter() - history.seconds
    try:
        for step in range(start_step, config.steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config)
            batch = corpus.get_batch("train", batch_size=config.batch_size, seq_len=config.seq_len,
                                     generator=generator).to(device)
            output = model(batch.inputs, targets=batch.targets, return_aux=True)
            loss = output.language_model_loss(batch.targets)
            terms = {name: value for hook in losses for name, value in hook(output, batch).items()}
            total = loss + sum(terms.values()) if terms else loss
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            done = step + 1
            history.step.append(done)
            history.train_loss.append(loss.item())
            history.lr.append(optimizer.param_groups[0]["lr"])
            for name, value in terms.items():
                history.extra.setdefault(name, []).append(float(value.detach()))
            if done % config.eval_every == 0 or done == config.steps:
                val_loss, by_domain = evaluate(model, eval_set, corpus.domains)
                history.eval_step.append(done)
                history.val_loss.append(val_loss)
                history.val_loss_by_domain.append(by_domain)
            if bar is not None:
                bar.update(1)
                # refresh=False: redraw at most every mininterval; a redraw per step floods the kernel's
                # message channel with widget updates, which can drop messages under nbval
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            history.seconds = time.perf_counter() - started
            try:
                for callback in callbacks:
                    callback(StepInfo(done, model, batch, output, loss.item(), history))
            finally:  # after the callbacks (a bias update belongs to this step), also when one stops training
                if checkpoint_path is not None and config.checkpoint_every and done % config.checkpoint_every == 0:
                    save_checkpoint(checkpoint_path, model, optimizer=optimizer, generator=generator, step=done,
                                    history=history.to_dict(), train_config=asdict(config))
    except StopTraining:
        pass
    finally:
        if bar is not None:
            bar.close()
    history.seconds = time.perf_counter() - started
    if checkpoint_path is not None:
        save_checkpoint(checkpoint_path, model, optimizer=optimizer, generator=generator,
                        step=history.step[-1] if history.step else 0, history=history.to_dict(),
                        train_config=asdict(config))
    return history
