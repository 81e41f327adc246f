"""Routers: which experts each token goes to, and with what weight.

One ``Router`` covers every scheme the course teaches (notebook 03), selected by a ``RouterConfig``:
- token choice top-k with a softmax gate (Shazeer et al. 2017; GShard), optionally renormalised over the k
  chosen (Mixtral), optionally noisy (Shazeer et al. 2017), k = 1 for Switch (Fedus et al. 2021);
- a sigmoid gate renormalised over the k chosen and multiplied by a routed scaling factor (DeepSeek-V3),
  or a sqrt(softplus) gate (DeepSeek-V4);
- group-limited routing (DeepSeek-V3's node-limited routing: keep the ``topk_group`` best of ``n_group`` groups,
  a group scored by the sum of its two best scores, then top-k inside them);
- hash routing by token id (Roller et al. 2021; DeepSeek-V4's first layers);
- expert choice (Zhou et al. 2022): each expert picks its tokens;
- a capacity factor that drops the lowest-weight assignments of overloaded experts, or dropless (None).
A per-expert ``bias`` (aux-loss-free balancing, notebook 04) shifts the scores for *selection only*.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

SCORE_FUNCTIONS = {
    "softmax": lambda logits: logits.softmax(-1),
    "sigmoid": torch.sigmoid,
    "sqrt_softplus": lambda logits: F.softplus(logits).sqrt(),
}
KINDS = ("topk", "expert_choice", "hash")


@dataclass
class RouterConfig:
    kind: str = "topk"  # "topk" (token choice), "expert_choice" or "hash"
    score: str = "softmax"  # gate: "softmax", "sigmoid" or "sqrt_softplus"
    normalize: bool = False  # renormalise the k selected weights to sum to 1
    routed_scaling: float = 1.0  # multiply the selected weights (DeepSeek-V3: 2.5)
    noisy: bool = False  # add learned, input-dependent Gaussian noise to the logits while training
    n_group: int = 1  # group-limited routing: experts split into n_group groups ...
    topk_group: int = 1  # ... of which each token may use only the topk_group best
    capacity_factor: float | None = None  # None: dropless; else each expert takes ceil(cf * T * k / E) pairs

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "softmax": RouterConfig(),
    "mixtral": RouterConfig(normalize=True),
    "noisy_topk": RouterConfig(noisy=True, normalize=True),
    "switch": RouterConfig(capacity_factor=1.25),
    "deepseek_v3": RouterConfig(score="sigmoid", normalize=True, routed_scaling=2.5),
    "deepseek_v4": RouterConfig(score="sqrt_softplus", normalize=True, routed_scaling=1.5),
    "expert_choice": RouterConfig(kind="expert_choice", capacity_factor=1.0),
    "hash": RouterConfig(kind="hash", score="sqrt_softplus", normalize=True),
}


@dataclass
class Routing:
    """The router's decision for T tokens. Expert choice uses k = n_experts and marks chosen pairs in ``kept``."""
    indices: torch.Tensor  # (T, k) long: the experts of each token
    weights: torch.Tensor  # (T, k): combine weights (0 where an assignment was dropped)
    scores: torch.Tensor  # (T, n_experts): the gate's output before selection
    logits: torch.Tensor  # (T, n_experts): the router's raw logits (for the z-loss)
    kept: torch.Tensor | None = None  # (T, k) bool, None when nothing was dropped

    def kept_mask(self) -> torch.Tensor:
        return self.kept if self.kept is not None else torch.ones_like(self.indices, dtype=torch.bool)

    def load(self, n_experts: int) -> torch.Tensor:
        """(n_experts,) number of kept token-expert assignments per expert."""
        return torch.bincount(self.indices[self.kept_mask()], minlength=n_experts)

    def dropped_fraction(self) -> float:
        return 0.0 if self.kept is None else 1.0 - self.kept.float().mean().item()

    def to(self, device: str | torch.device) -> "Routing":
        """The same decision with every tensor on ``device`` (analysis code gathers statistics on the CPU)."""
        return Routing(*(None if t is None else t.to(device) for t in
                         (self.indices, self.weights, self.scores, self.logits, self.kept)))


def capacity(n_tokens: int, n_experts: int, top_k: int, capacity_factor: float) -> int:
    """Assignments one expert may take: ceil(capacity_factor * tokens * k / experts)."""
    return math.ceil(capacity_factor * n_tokens * top_k / n_experts)


def capacity_mask(indices: torch.Tensor, weights: torch.Tensor, n_experts: int, limit: int) -> torch.Tensor:
    """(T, k) bool: True for the ``limit`` highest-weight assignments of each expert, False for the overflow.

    Dropping the lowest-affinity assignments first follows DeepSeek-V2's token-dropping rule.
    """
    flat_expert, flat_weight = indices.flatten(), weights.detach().flatten()
    by_weight = flat_weight.argsort(descending=True, stable=True)
    order = by_weight[flat_expert[by_weight].argsort(stable=True)]  # grouped by expert, best weight first
    counts = torch.bincount(flat_expert, minlength=n_experts)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.numel(), device=indices.device) - starts[flat_expert[order]]
    kept = torch.empty_like(flat_expert, dtype=torch.bool)
    kept[order] = rank < limit
    return kept.view_as(indices)


class Router(nn.Module):
    def __init__(self, d_model: int, n_experts: int, top_k: int, config: RouterConfig | None = None, *,
                 vocab_size: int = 256, hash_seed: int = 0):
        super().__init__()
        config = config or RouterConfig()
        _validate(n_experts, top_k, config)
        self.n_experts, self.top_k, self.config = n_experts, top_k, config
        self.gate = nn.Linear(d_model, n_experts, bias=False)
        self.noise = nn.Linear(d_model, n_experts, bias=False) if config.noisy else None
        self.register_buffer("bias", torch.zeros(n_experts))  # selection-only bias (aux-loss-free balancing)
        if config.kind == "hash":  # a fixed random table: token id -> k distinct experts
            generator = torch.Generator().manual_seed(hash_seed)
            table = torch.stack([torch.randperm(n_experts, generator=generator)[:top_k] for _ in range(vocab_size)])
            self.register_buffer("token_to_experts", table)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> Routing:
        """x: (T, d_model) float; token_ids: (T,) long, needed by hash routing only."""
        if x.dim() != 2 or x.shape[1] != self.gate.in_features or not x.is_floating_point():
            raise ValueError(f"router input must be a float (tokens, {self.gate.in_features}) tensor, "
                             f"got {tuple(x.shape)} {x.dtype}")
        config = self.config
        logits = self.gate(x)  # (T, E)
        if self.noise is not None and self.training:
            logits = logits + torch.randn_like(logits) * F.softplus(self.noise(x))
        scores = SCORE_FUNCTIONS[config.score](logits)
        if config.kind == "expert_choice":
            return self._expert_choice(scores, logits)
        if config.kind == "hash":
            if token_ids is None or token_ids.shape != x.shape[:1]:
                raise ValueError("hash routing needs the token ids of the routed tokens: token_ids of shape (tokens,)")
            indices = self.token_to_experts[token_ids]  # (T, k)
        else:
            selection = (scores + self.bias).detach()  # the bias steers selection, never the weights
            if config.n_group > 1:
                selection = self._limit_groups(selection)
            indices = selection.topk(self.top_k, dim=-1).indices  # (T, k)
        weights = scores.gather(1, indices)
        if config.normalize:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        weights = weights * config.routed_scaling
        kept = None
        if config.capacity_factor is not None:
            limit = capacity(x.shape[0], self.n_experts, self.top_k, config.capacity_factor)
            kept = capacity_mask(indices, weights, self.n_experts, limit)
            weights = weights * kept
        return Routing(indices, weights, scores, logits, kept)

    def _limit_groups(self, selection: torch.Tensor) -> torch.Tensor:
        """Mask (with -inf) every expert outside each token's ``topk_group`` best groups."""
        tokens, n_group = selection.shape[0], self.config.n_group
        grouped = selection.view(tokens, n_group, -1)  # (T, n_group, experts per group)
        group_score = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(-1)  # (T, n_group)
        best_groups = group_score.topk(self.config.topk_group, dim=-1).indices  # (T, topk_group)
        allowed = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, best_groups, True)
        return grouped.masked_fill(~allowed[..., None], float("-inf")).view(tokens, -1)

    def _expert_choice(self, scores: torch.Tensor, logits: torch.Tensor) -> Routing:
        tokens = scores.shape[0]
        per_expert = min(tokens, capacity(tokens, self.n_experts, self.top_k, self.config.capacity_factor or 1.0))
        chosen_tokens = scores.detach().T.topk(per_expert, dim=-1).indices  # (E, per_expert)
        chosen = torch.zeros_like(scores, dtype=torch.bool)
        chosen[chosen_tokens, torch.arange(self.n_experts, device=scores.device)[:, None]] = True
        indices = torch.arange(self.n_experts, device=scores.device).expand(tokens, -1)  # (T, E)
        return Routing(indices, scores * chosen * self.config.routed_scaling, scores, logits, chosen)


def _validate(n_experts: int, top_k: int, config: RouterConfig) -> None:
    if n_experts < 1:
        raise ValueError(f"n_experts must be >= 1, got {n_experts}")
    if not 1 <= top_k <= n_experts:
        raise ValueError(f"top_k must be between 1 and n_experts={n_experts}, got {top_k}")
    if config.kind not in KINDS:
        raise ValueError(f"router kind must be one of {KINDS}, got {config.kind!r}")
    if config.score not in SCORE_FUNCTIONS:
        raise ValueError(f"router score must be one of {tuple(SCORE_FUNCTIONS)}, got {config.score!r}")
    if config.capacity_factor is not None and not config.capacity_factor > 0:
        raise ValueError(f"capacity_factor must be > 0 (or None for dropless), got {config.capacity_factor}")
    if config.n_group < 1 or n_experts % config.n_group:
        raise ValueError(f"n_experts={n_experts} must be divisible by n_group={config.n_group} (n_group >= 1)")
    if not 1 <= config.topk_group <= config.n_group:
        raise ValueError(f"topk_group must be between 1 and n_group={config.n_group}, got {config.topk_group}")
    if config.n_group > 1 and config.topk_group * (n_experts // config.n_group) < top_k:
        raise ValueError(f"topk_group={config.topk_group} groups of {n_experts // config.n_group} experts cannot "
                         f"hold top_k={top_k} experts; raise topk_group or lower top_k")
    if config.routed_scaling <= 0:
        raise ValueError(f"routed_scaling must be > 0, got {config.routed_scaling}")
