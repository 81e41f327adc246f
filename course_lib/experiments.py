"""Train once, reuse everywhere: an experiment runner that caches trained models by configuration.

The cache lives in ``.cache/experiments/`` (or ``$COURSE_CACHE``), never committed. The key covers the model
config, the training config, any extra settings, and a fingerprint of course_lib's source, so a changed config
or changed library retrains while a re-run of the same notebook is instant. Training is seeded, so a cached
result is the result a fresh run would give. Used from notebook 02 on.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from .balancing import BalanceConfig
from .data import Corpus
from .hardware import pick_device, seed_everything
from .checkpoints import load_checkpoint, read_checkpoint
from .train import History, TrainConfig, train
from .transformer import ModelConfig, Transformer

CACHE_ENV = "COURSE_CACHE"
LIBRARY_DIR = Path(__file__).resolve().parent


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, LIBRARY_DIR.parent / ".cache")) / "experiments"


def library_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(LIBRARY_DIR.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def experiment_key(model_config: ModelConfig, train_config: TrainConfig, extra: dict | None = None) -> str:
    train = {k: v for k, v in asdict(train_config).items() if k != "workshop_min_steps"}  # only steps matter
    description = {"model": model_config.to_dict(), "train": train, "extra": extra or {},
                   "library": library_fingerprint()}
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]


def train_cached(model_config: ModelConfig, train_config: TrainConfig, *, corpus: Corpus | None = None,
                 balance: BalanceConfig | None = None, device=None,
                 progress: bool = True) -> tuple[Transformer, History, bool]:
    """Return (model, history, from_cache) for this configuration, training (seeded) only when not cached."""
    device = pick_device(device)  # before the cache lookup: a device error must not pass for a damaged entry
    extra = {"balance": balance.to_dict()} if balance is not None else None
    path = cache_dir() / f"{experiment_key(model_config, train_config, extra)}.safetensors"
    seed_everything(train_config.seed)
    model = Transformer(model_config)
    if path.exists():
        try:
            read_checkpoint(path)
            _, history = load_checkpoint(path, model)
            return model.to(device), History(**history), True  # where a fresh run would train
        except ValueError:  # a damaged cache entry is simply retrained
            path.unlink()
    history = train(model, corpus or Corpus(), train_config, device=device, balance=balance,
                    checkpoint_path=path, progress=progress)
    return model, history, False


def standard_moe_model(*, corpus: Corpus | None = None, progress: bool = True) -> tuple[Transformer, History, bool]:
    """The course's standard MoE model (notebook 02: STANDARD_MOE FFNs, 400 steps), trained once and cached."""
    from .moe import STANDARD_MOE

    return train_cached(ModelConfig(moe=STANDARD_MOE), TrainConfig(steps=400, eval_every=100), corpus=corpus,
                        progress=progress)


def mini_deepseek_config(version: str = "v4", *, mtp: bool = True) -> ModelConfig:
    """The course model composed the DeepSeek way (notebook 08), at the FFN compute of the dense baseline.

    Both versions: 1 shared + 32 fine-grained routed experts of width 44, top-7 (active width 8 x 44 = 352),
    renormalised top-k weights with a routed scaling factor, and (with ``mtp``) a depth-1 MTP module.
    v3: sigmoid gate, scaling 2.5, group-limited routing (4 groups, a token may use 2).
    v4: sqrt(softplus) gate, scaling 1.5, no group limit, the first MoE layer hash-routed.
    Balance it with BalanceConfig(bias_update_rate=..., sequence_loss=1e-4), as V3 and V4 do.
    """
    routers = {"v3": dict(score="sigmoid", normalize=True, routed_scaling=2.5, n_group=4, topk_group=2),
               "v4": dict(score="sqrt_softplus", normalize=True, routed_scaling=1.5)}
    if version not in routers:
        raise ValueError(f"version must be 'v3' or 'v4', got {version!r}")
    moe = dict(n_experts=32, top_k=7, expert_hidden=44, n_shared=1, router=routers[version], dispatch="grouped",
               hash_layers=1 if version == "v4" else 0)
    return ModelConfig(moe=moe, mtp_depth=1 if mtp else 0)
