"""Load balancing: auxiliary losses, DeepSeek's aux-loss-free bias, and the metrics to judge them (notebook 04).

Normalisations (both equal 1 under perfectly uniform routing):
- Switch (Fedus et al. 2021, eq. 4-6), generalised to top-k: N * sum_i f_i * P_i with f_i the fraction of the
  T*k token-expert assignments that go to expert i and P_i the mean router probability of expert i.
- DeepSeek-V3's sequence-wise loss (report eq. 17-20): sum_i f_i * P_i per sequence, f_i = N/(K*T) * count_i,
  P_i the mean of the scores normalised to sum to 1 per token; averaged over sequences.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from .hardware import model_device



# ---- losses -------------------------------------------------------------------------------------------------

def _check_routing_shapes(probs: torch.Tensor, indices: torch.Tensor, n_experts: int) -> None:
    if probs.dim() != 2 or probs.shape[1] != n_experts:
        raise ValueError(f"probs must be (tokens, n_experts={n_experts}), got {tuple(probs.shape)}")
    if indices.dim() != 2 or indices.shape[0] != probs.shape[0]:
        raise ValueError(f"indices must be (tokens, k) with tokens={probs.shape[0]}, got {tuple(indices.shape)}")
    if probs.shape[0] == 0:
        raise ValueError("cannot compute a balance loss on an empty batch (0 tokens)")


def switch_aux_loss(probs: torch.Tensor, indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    """N * sum_i f_i * P_i. 1 when balanced; N when every token goes to one expert with probability 1.

    Only P carries a gradient (f counts discrete choices): the loss pushes probability away from busy experts.
    """
    _check_routing_shapes(probs, indices, n_experts)
    fraction = torch.bincount(indices.flatten(), minlength=n_experts).to(probs.dtype) / indices.numel()
    return n_experts * (fraction * probs.mean(0)).sum()


def sequence_balance_loss(scores: torch.Tensor, indices: torch.Tensor, n_experts: int, *, seq_len: int) -> torch.Tensor:
    """DeepSeek-V3's complementary sequence-wise balance loss (without its coefficient alpha).

    scores: (sequences * seq_len, n_experts) gate outputs (sigmoid or softmax); indices: (same tokens, k).
    """
    _check_routing_shapes(scores, indices, n_experts)
    tokens, top_k = indices.shape
    if seq_len < 1 or tokens % seq_len:
        raise ValueError(f"{tokens} tokens do not split into sequences of seq_len={seq_len}")
    sequences = tokens // seq_len
    counts = torch.zeros(sequences, n_experts, dtype=scores.dtype, device=scores.device)
    counts.scatter_add_(1, indices.view(sequences, seq_len * top_k),
                        torch.ones(sequences, seq_len * top_k, dtype=scores.dtype, device=scores.device))
    fraction = counts * n_experts / (top_k * seq_len)  # (sequences, N)
    normalised = scores / scores.sum(-1, keepdim=True)  # s' = s / sum_j s_j, per token
    mean_score = normalised.view(sequences, seq_len, n_experts).mean(1)  # (sequences, N)
    return (fraction * mean_score).sum(-1).mean()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE's z-loss: the mean over tokens of logsumexp(router logits)^2; keeps logits small."""
    if logits.numel() == 0:
        raise ValueError("cannot compute the z-loss of an empty batch")
    return torch.logsumexp(logits, dim=-1).pow(2).mean()


# ---- aux-loss-free balancing ----------------------------------------------------------------------------------

class BiasBalancer:
    """Wang et al. 2024's per-expert bias, as in DeepSeek-V3/V4: b_i <- b_i + u * sign(mean load - load_i).

    The router adds ``bias`` to its scores to *select* experts, never to the combine weights. Call ``update``
    after each optimizer step with the step's load. update_rate = 0 freezes the bias (V3's last 500B tokens).
    bias: the tensor to update in place; pass a router's ``bias`` buffer to steer that router.
    """

    def __init__(self, n_experts: int, update_rate: float, *, bias: torch.Tensor | None = None):
        if update_rate < 0:
            raise ValueError(f"update_rate must be >= 0 (0 freezes the bias), got {update_rate}")
        self.n_experts, self.update_rate = n_experts, update_rate
        self.bias = bias if bias is not None else torch.zeros(n_experts)
        if self.bias.shape != (n_experts,):
            raise ValueError(f"bias must have shape ({n_experts},), got {tuple(self.bias.shape)}")

    @torch.no_grad()
    def update(self, load: torch.Tensor) -> None:
        load = torch.as_tensor(load, dtype=torch.float32, device=self.bias.device)
        if load.shape != (self.n_experts,):
            raise ValueError(f"load must have one count per expert, shape ({self.n_experts},), got {tuple(load.shape)}")
        self.bias += self.update_rate * torch.sign(load.mean() - load)


# ---- metrics ------------------------------------------------------------------------------------------------

def max_violation(load: torch.Tensor) -> float:
    """MaxVio (Wang et al. 2024, eq. 4): (max load - mean load) / mean load; 0 when perfectly balanced."""
    load = torch.as_tensor(load, dtype=torch.float64)
    if load.dim() != 1 or load.numel() == 0 or load.sum() <= 0:
        raise ValueError(f"load must be a non-empty 1-D vector with a positive total, got {load.tolist()}")
    return float((load.max() - load.mean()) / load.mean())


def coefficient_of_variation(load: torch.Tensor) -> float:
    load = torch.as_tensor(load, dtype=torch.float64)
    return float(load.std(unbiased=False) / load.mean())


def routing_entropy(scores: torch.Tensor) -> float:
    """Mean entropy (nats) of each token's routing distribution (scores normalised to sum to 1)."""
    p = scores / scores.sum(-1, keepdim=True)
    return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())


# ---- hooks for the training loop ----------------------------------------------------------------------------------
# course_lib.train calls loss hooks as hook(output, batch) -> {name: weighted term} before the backward pass, and
# callbacks as callback(StepInfo) after each optimizer step. Every hook reads the step's routing from the
# ModelOutput the model returned, one Routing per MoE layer in the order of model.moe_layers().

@dataclass
class BalanceConfig:
    """How training balances the experts. Coefficients multiply losses averaged over the MoE layers."""
    aux_loss: float = 0.0  # Switch-style aux loss coefficient alpha
    sequence_loss: float = 0.0  # DeepSeek-V3 sequence-wise loss coefficient (V3: 1e-4)
    z_loss: float = 0.0  # router z-loss coefficient (ST-MoE)
    bias_update_rate: float = 0.0  # aux-loss-free bias speed u (V3: 0.001); 0 = no bias updates

    def __post_init__(self):
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"BalanceConfig.{name} must be >= 0, got {value}")

    def to_dict(self) -> dict:
        return asdict(self)


def balance_losses(config: BalanceConfig):
    """A loss hook: the configured balance losses, averaged over every MoE layer's routing of this step."""
    def losses(output, batch) -> dict[str, torch.Tensor]:
        sequences = batch.inputs.shape[0]
        terms = {}
        for name, coefficient, fn in (
            ("aux_loss", config.aux_loss, lambda r: switch_aux_loss(r.scores / r.scores.sum(-1, keepdim=True), r.indices, r.scores.shape[1])),
            # a layer routes sequences * seq tokens (seq - 1 in the MTP module): each row of the batch is one sequence
            ("sequence_loss", config.sequence_loss, lambda r: sequence_balance_loss(
                r.scores, r.indices, r.scores.shape[1], seq_len=r.indices.shape[0] // sequences)),
            ("z_loss", config.z_loss, lambda r: router_z_loss(r.logits)),
        ):
            if coefficient > 0:
                terms[name] = coefficient * sum(fn(routing) for routing in output.routing) / len(output.routing)
        return terms
    return losses


def bias_updater(model: nn.Module, update_rate: float):
    """A callback: after each optimizer step, move every MoE layer's router bias against that step's load.

    The bias buffer is looked up at every step, not kept: ``model.to(device)`` (which train() calls) replaces
    buffers, and an update of the old tensor would silently never reach the model.
    """
    layers = model.moe_layers()
    BiasBalancer(layers[0].n_experts if layers else 1, update_rate)  # refuse a bad rate now, not at step 1

    def update(info) -> None:
        for layer, routing in zip(layers, info.output.routing, strict=True):
            BiasBalancer(layer.n_experts, update_rate, bias=layer.router.bias).update(routing.load(layer.n_experts))
    return update


def routing_record(routings) -> dict:
    """Per-layer statistics of one forward pass's routing: load, MaxVio, entropy, dropped fraction (JSON-able)."""
    record = {"load": [], "max_violation": [], "entropy": [], "dropped": []}
    for routing in routings:
        load = routing.load(routing.scores.shape[1])
        record["load"].append(load.tolist())
        record["max_violation"].append(max_violation(load))
        record["entropy"].append(routing_entropy(routing.scores.detach()))
        record["dropped"].append(routing.dropped_fraction())
    return record


def routing_recorder(*, every: int):
    """A callback: MaxVio of each step's batch (mean over layers) into ``history.extra["max_violation_batch"]``,
    and the full per-layer record into ``history.routing`` at step 1 and every ``every`` steps."""
    def record_step(info) -> None:
        record = routing_record(info.output.routing)
        info.history.extra.setdefault("max_violation_batch", []).append(
            sum(record["max_violation"]) / len(record["max_violation"]))
        if info.step % every == 0 or info.step == 1:
            info.history.routing.append({"step": info.step, **record})
    return record_step


@torch.no_grad()
def global_load(model: nn.Module, batches) -> torch.Tensor:
    """(MoE layers, experts) assignments counted over a whole evaluation set, for MaxVio_global."""
    was_training = model.training
    model.eval()
    layers = model.moe_layers()
    device = model_device(model)
    totals = torch.zeros(len(layers), layers[0].n_experts)
    for batch in batches:
        output = model(batch.inputs.to(device), targets=batch.targets.to(device), return_aux=True)
        for i, (layer, routing) in enumerate(zip(layers, output.routing, strict=True)):
            totals[i] += routing.load(layer.n_experts).cpu()
    model.train(was_training)
    return totals


def layer_max_violation(loads: torch.Tensor) -> float:
    """MaxVio averaged over layers, as Wang et al. 2024 report it. loads: (layers, experts)."""
    return sum(max_violation(row) for row in loads) / loads.shape[0]


def uniform_limit(n_experts: int) -> float:
    """The largest routing entropy: log N nats, every expert equally likely."""
    return math.log(n_experts)
