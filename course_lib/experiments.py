"""The course's named experiments: every training run a notebook shows, defined once and run by name.

An ``Experiment`` is plain data: a model config, a training config, the balancing, and how far workshop mode
may shorten it. ``run_experiment("moe_fine_shared", seed=1)`` trains it (or loads it from the cache of
course_lib.cached_training) and returns ``(model, history, from_cache)``. A notebook that reuses another
notebook's run names it, so it gets the very same run, cached, in workshop mode too. Used from notebook 01 on;
``python -m course_lib.experiments`` lists them.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
from dataclasses import dataclass
from typing import NamedTuple

import torch.nn as nn

from .balancing import BalanceConfig
from .cached_training import train_cached
from .config import DeepSeekConfig, ModelConfig, MoEConfig
from .data import Corpus, TrainingData
from .memorisation import FactsAndSums
from .moe import STANDARD_MOE
from .routing import RouterConfig
from .train import History, TrainConfig, workshop_scaled


@dataclass(frozen=True)
class Experiment:
    name: str
    notebook: str  # the notebook that introduces it
    model: ModelConfig | DeepSeekConfig
    train: TrainConfig
    balance: BalanceConfig | None = None  # None: no balance losses, no bias updates
    workshop_min_steps: int = 20  # workshop mode never trains fewer steps (a run whose point needs every step: its steps)
    data: str = "corpus"  # the training data, a key of DATASETS

    def dataset(self) -> TrainingData:
        return DATASETS[self.data]()

    def train_config(self, *, seed: int | None = None) -> TrainConfig:
        """The training config to run: with ``seed`` if given, shortened in workshop mode (COURSE_WORKSHOP=1)."""
        config = self.train if seed is None else dataclasses.replace(self.train, seed=seed)
        return workshop_scaled(config, min_steps=self.workshop_min_steps)


DATASETS = {"corpus": Corpus, "facts_and_sums": FactsAndSums}  # notebook 09 trains on facts and sums


class Run(NamedTuple):
    model: nn.Module
    history: History
    from_cache: bool


def mini_deepseek_config(version: str = "v4", *, mtp: bool = True) -> ModelConfig:
    """The course model composed the DeepSeek way (notebook 08), at the FFN compute of the dense baseline.

    Both versions: 1 shared + 32 fine-grained routed experts of width 44, top-7 (active width 8 x 44 = 352),
    renormalised top-k weights with a routed scaling factor, and (with ``mtp``) a depth-1 MTP module.
    v3: sigmoid gate, scaling 2.5, group-limited routing (4 groups, a token may use 2).
    v4: sqrt(softplus) gate, scaling 1.5, no group limit, the first MoE layer hash-routed.
    Balance it with BalanceConfig(bias_update_rate=..., sequence_loss=1e-4), as V3 and V4 do.
    """
    routers = {"v3": RouterConfig(score="sigmoid", normalize=True, routed_scaling=2.5, n_group=4, topk_group=2),
               "v4": RouterConfig(score="sqrt_softplus", normalize=True, routed_scaling=1.5)}
    if version not in routers:
        raise ValueError(f"version must be 'v3' or 'v4', got {version!r}")
    moe = MoEConfig(n_experts=32, top_k=7, expert_hidden=44, n_shared=1, router=routers[version], dispatch="grouped",
                    hash_layers=1 if version == "v4" else 0)
    return ModelConfig(moe=moe, mtp_depth=1 if mtp else 0)


def _mini_v4_without(*, hash_layers: int = 1, **router_changes) -> ModelConfig:
    """mini_v4 (no MTP) with one thing changed: a router field, or the number of hash-routed layers."""
    config = mini_deepseek_config("v4", mtp=False)
    moe = dataclasses.replace(config.moe, router=dataclasses.replace(config.moe.router, **router_changes),
                              hash_layers=hash_layers)
    return dataclasses.replace(config, moe=moe)


def miniature_config(kind: str) -> DeepSeekConfig:
    """Notebook 11's three models at equal active parameters per token (within 0.5%): 4 blocks, d = 64, 4 heads.
    MoE: 1 shared + the top 3 of 16 routed experts, balanced the DeepSeek way. "dense" (one SwiGLU of 244) and
    "v3" (experts of 60) attend with MLA; "v4" spends the same budget differently: experts of 32, a sliding / CSA /
    HCA / CSA schedule scaled to 64-token sequences (window 16, CSA every 4 tokens keeping 4 entries, HCA every 16),
    4 hyper-connected streams, a hash-routed first MoE layer, sqrt(softplus) and clamped SwiGLU experts."""
    shape = dict(vocab_size=256, d_model=64, n_layers=4, n_heads=4, q_lora_rank=32, rope_dim=8)
    mla = dict(attention=("mla",) * 4, kv_lora_rank=32, qk_nope_dim=16, v_head_dim=16)
    experts = dict(n_experts=16, top_k=3, n_shared=1)
    if kind == "dense":
        return DeepSeekConfig(**shape, **mla, dense_hidden=244)
    if kind == "v3":
        router = RouterConfig(score="sigmoid", normalize=True, routed_scaling=2.5, n_group=4, topk_group=2)
        return DeepSeekConfig(**shape, **mla, moe=MoEConfig(**experts, expert_hidden=60, router=router))
    if kind == "v4":
        router = RouterConfig(score="sqrt_softplus", normalize=True, routed_scaling=1.5)
        return DeepSeekConfig(**shape, attention=("sliding", "csa", "hca", "csa"), head_dim=32, sliding_window=16,
                              csa_rate=4, hca_rate=16, index_heads=2, index_head_dim=16, index_topk=4, o_groups=2,
                              o_lora_rank=32, hc_streams=4,
                              moe=MoEConfig(**experts, expert_hidden=32, router=router, hash_layers=1,
                                            swiglu_limit=10.0))
    raise ValueError(f"kind must be 'dense', 'v3' or 'v4', got {kind!r}")


def parrots_config(n_experts: int) -> ModelConfig:
    """Notebook 09's model with ``n_experts`` experts at fixed active compute: top-1 over SwiGLU experts of width 64
    (1 = the dense model with that FFN). Switch's gate: the chosen expert's softmax probability, not renormalised,
    since renormalised over k = 1 it is always 1 and the router would get no gradient."""
    moe = None if n_experts == 1 else MoEConfig(n_experts=n_experts, top_k=1, expert_hidden=64, router=RouterConfig(),
                                                 dispatch="grouped")
    return ModelConfig(context_length=16, d_model=32, n_layers=2, n_heads=2, ffn_hidden=64, moe=moe)


PARROTS_EXPERTS = (1, 2, 4, 8, 16)
# weight decay 0: it would pull stored facts back towards zero; every step counts, also in workshop mode
_PARROTS_TRAIN = TrainConfig(steps=5000, batch_size=128, seq_len=9, lr=3e-3, warmup_steps=50, weight_decay=0.0,
                             eval_every=500, eval_batches=4, record_every=500)
_SIGMOID = RouterConfig(score="sigmoid", normalize=True)
_BALANCING_MODEL = ModelConfig(context_length=64, d_model=64, n_layers=2, n_heads=2, ffn_hidden=176,
                               moe=MoEConfig(n_experts=8, top_k=2, expert_hidden=88, dispatch="grouped", router=_SIGMOID))
_BALANCING_TRAIN = TrainConfig(steps=400, batch_size=16, seq_len=64, lr=6e-3, warmup_steps=20, eval_every=100,
                               eval_batches=6, record_every=20)
_COMPARISON = TrainConfig(steps=300, batch_size=32, seq_len=64, eval_every=25, eval_batches=6)  # notebooks 05 and 08
_MINIATURE_TRAIN = TrainConfig(steps=150, batch_size=16, seq_len=64, lr=3e-3, warmup_steps=15, eval_every=50,
                               eval_batches=6, record_every=10)
_BIAS = BalanceConfig(bias_update_rate=0.01)
_DEEPSEEK_BALANCE = BalanceConfig(bias_update_rate=0.01, sequence_loss=1e-4)

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("dense", "01", ModelConfig(),
               TrainConfig(steps=700, batch_size=32, seq_len=64, lr=6e-3, warmup_steps=30, eval_every=100)),
    Experiment("standard_moe", "02", ModelConfig(moe=STANDARD_MOE), TrainConfig(steps=400, eval_every=100)),
    # notebook 04 trains this small MoE with each balancing method; the bias needs every step, so does workshop mode
    Experiment("balancing", "04", _BALANCING_MODEL, _BALANCING_TRAIN, BalanceConfig(), workshop_min_steps=400),
    # its balancing settings, each swept over seeds (python -m course_lib.seeds): the aux-loss coefficient alpha,
    # the loss-free bias rate u and the router z-loss
    *(Experiment(f"balancing_{kind}_{value:g}", "04", _BALANCING_MODEL, _BALANCING_TRAIN,
                 BalanceConfig(**{field: value}), workshop_min_steps=400)
      for kind, field in (("aux", "aux_loss"), ("bias", "bias_update_rate")) for value in (1e-3, 1e-2, 1e-1)),
    Experiment("balancing_zloss_0.01", "04", _BALANCING_MODEL, _BALANCING_TRAIN, BalanceConfig(z_loss=1e-2),
               workshop_min_steps=400),
    # notebook 05's compute-matched contenders; at 40% of the steps the x4 dense model has not caught up yet
    Experiment("dense_300", "05", ModelConfig(), _COMPARISON, workshop_min_steps=300),
    Experiment("moe_coarse", "05",
               ModelConfig(moe=MoEConfig(n_experts=8, top_k=2, expert_hidden=176, router=_SIGMOID, dispatch="grouped")),
               _COMPARISON, _BIAS, workshop_min_steps=300),
    Experiment("moe_fine_shared", "05",
               ModelConfig(moe=MoEConfig(n_experts=31, top_k=7, expert_hidden=44, n_shared=1, router=_SIGMOID,
                                         dispatch="grouped")),
               _COMPARISON, _BIAS, workshop_min_steps=300),
    Experiment("dense_x4", "05", ModelConfig(ffn_hidden=1408), _COMPARISON, workshop_min_steps=300),
    # notebook 08: the DeepSeek-style composition, compared with moe_fine_shared at the same steps
    Experiment("mini_v4_mtp", "08", mini_deepseek_config("v4"), _COMPARISON, _DEEPSEEK_BALANCE, workshop_min_steps=300),
    Experiment("mini_v4", "08", mini_deepseek_config("v4", mtp=False), _COMPARISON, _DEEPSEEK_BALANCE,
               workshop_min_steps=300),
    # notebook 08's ablations of mini_v4, one change each, at the same compute and steps
    *(Experiment(f"mini_v4_{change}", "08", _mini_v4_without(**fields), _COMPARISON, _DEEPSEEK_BALANCE,
                 workshop_min_steps=300)
      for change, fields in (("scale1", dict(routed_scaling=1.0)), ("sigmoid", dict(score="sigmoid")),
                             ("nohash", dict(hash_layers=0)))),
    # notebook 09: more experts at the same active compute, on facts (memorisation) and sums (a procedure)
    *(Experiment(f"parrots_e{n}", "09", parrots_config(n), _PARROTS_TRAIN,
                 BalanceConfig(aux_loss=0.01) if n > 1 else None, workshop_min_steps=_PARROTS_TRAIN.steps,
                 data="facts_and_sums") for n in PARROTS_EXPERTS),
    # notebook 11: V4, V3 and dense in miniature at equal active parameters; short, so never shortened
    *(Experiment(f"miniature_{kind}", "11", miniature_config(kind), _MINIATURE_TRAIN,
                 None if kind == "dense" else _DEEPSEEK_BALANCE, workshop_min_steps=_MINIATURE_TRAIN.steps)
      for kind in ("dense", "v3", "v4")),
)}


def get_experiment(name: str, **changes) -> Experiment:
    """The registered experiment ``name``, with any of its fields replaced (for example ``balance=...``)."""
    if name not in EXPERIMENTS:
        close = difflib.get_close_matches(name, EXPERIMENTS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"no experiment named {name!r}.{hint} Registered: {', '.join(EXPERIMENTS)}")
    return dataclasses.replace(copy.deepcopy(EXPERIMENTS[name]), **changes)  # a copy: the registry stays as defined


def run_experiment(experiment: str | Experiment, *, seed: int | None = None, corpus: TrainingData | None = None,
                   device=None, progress: bool = True) -> Run:
    """Train the experiment (by name or as an Experiment) with ``seed``, or load it from the cache.

    corpus: its training data, if already loaded (default: a fresh ``experiment.dataset()``)."""
    if isinstance(experiment, str):
        experiment = get_experiment(experiment)
    return Run(*train_cached(experiment.model, experiment.train_config(seed=seed), corpus=corpus or experiment.dataset(),
                             balance=experiment.balance, device=device, progress=progress))


def standard_moe_model(*, corpus: Corpus | None = None, progress: bool = True) -> Run:
    """The course's standard MoE model (notebook 02: STANDARD_MOE FFNs, 400 steps), trained once and cached."""
    return run_experiment("standard_moe", corpus=corpus, progress=progress)


def main() -> None:
    for e in EXPERIMENTS.values():
        kind = "dense" if e.model.moe is None else f"MoE {e.model.moe.n_experts} experts, top-{e.model.moe.top_k}"
        print(f"{e.name:16s} notebook {e.notebook}  {kind:24s} {e.train.steps} steps"
              + (f", {e.balance}" if e.balance else ""))


if __name__ == "__main__":
    main()
