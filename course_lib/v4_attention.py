"""DeepSeek-V4's hybrid attention (V4 report §2.3), taught in notebook 11.

Every V4 layer attends with one shared key-value head (multi-query attention where the key is also the value)
over two kinds of entries:
- the last ``sliding_window`` tokens themselves (the sliding-window branch: exact, local);
- compressed entries, each pooling ``rate`` consecutive tokens with learned, softmax-normalised weights:
  * HCA (heavily compressed attention): rate m' = 128; every query sees every finished entry;
  * CSA (compressed sparse attention): rate m = 4, entries pooled over overlapping windows of 2m tokens, and a
    small *lightning indexer* scores the entries for each query and keeps only the ``index_topk`` best.
A layer of type "sliding" has the first branch only. Queries go through a low-rank bottleneck (as in MLA), RoPE
rotates only the last ``rope_dim`` channels of each head, each head has a learned *attention sink* (a logit that
takes probability mass without contributing a value), and a grouped output projection maps the wide
concatenated heads (n_heads * head_dim) to d_model in two cheap steps.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import DeepSeekConfig
from .mhc import unit_rms
from .rope import rope_angles, rotate_tail
from .transformer import RMSNorm


def finished_entries(n_queries: int, n_entries: int, rate: int, device: torch.device) -> torch.Tensor:
    """(queries, entries) bool: entry t pools tokens [t*rate, (t+1)*rate), usable once the query has seen them all."""
    queries = torch.arange(n_queries, device=device)
    return torch.arange(n_entries, device=device) < ((queries + 1) // rate)[:, None]


class Compressor(nn.Module):
    """Pools every ``rate`` tokens into one entry of ``head_dim`` channels (V4 §2.3.1, eqs. 9-12; §2.3.2).

    Each token offers a candidate entry (kv) and per-channel gate logits; an entry is the softmax(gate + position
    bias)-weighted sum of its window's candidates, RMS-normalised, its RoPE channels rotated to the window's first
    position. ``overlap`` (CSA): each token offers two candidates, one for its own window and one for the next, so
    an entry pools 2 * rate tokens with stride rate.
    """

    def __init__(self, d_model: int, head_dim: int, rate: int, *, overlap: bool, rope_dim: int, rope_theta: float,
                 rms_eps: float = 1e-6):
        super().__init__()
        self.head_dim, self.rate, self.overlap, self.rope_dim, self.rope_theta = head_dim, rate, overlap, rope_dim, rope_theta
        width = (2 if overlap else 1) * head_dim
        self.kv_proj = nn.Linear(d_model, width, bias=False)
        self.gate_proj = nn.Linear(d_model, width, bias=False)
        self.position_bias = nn.Parameter(torch.zeros(rate, width))
        self.norm = RMSNorm(head_dim, eps=rms_eps)

    def candidates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What each entry pools: (batch, n, slots, head_dim) candidates and their softmax weights over the slots
        (per channel), n = seq // rate entries of rate slots, or 2 * rate with ``overlap`` (window w-1, then w)."""
        batch, seq, _ = x.shape
        n, dim = seq // self.rate, self.head_dim
        usable = x[:, :n * self.rate]
        kv = self.kv_proj(usable).view(batch, n, self.rate, -1)  # (batch, seq', width) -> (batch, n, rate, width)
        gate = self.gate_proj(usable).view(batch, n, self.rate, -1) + self.position_bias
        if self.overlap:  # entry w pools window w-1's first half-candidates and window w's second ones
            previous_kv = F.pad(kv[:, :-1, :, :dim], (0, 0, 0, 0, 1, 0))  # window -1 does not exist: zeros ...
            previous_gate = F.pad(gate[:, :-1, :, :dim], (0, 0, 0, 0, 1, 0), value=float("-inf"))  # ... weight 0
            kv = torch.cat([previous_kv, kv[..., dim:]], dim=2)  # (batch, n, 2 * rate, dim)
            gate = torch.cat([previous_gate, gate[..., dim:]], dim=2)
        return kv, gate.softmax(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, seq, d_model) -> (batch, seq // rate, head_dim); an unfinished last window gives no entry."""
        batch, seq, _ = x.shape
        n = seq // self.rate
        if n == 0:  # fewer tokens than one window: no entry yet
            return x.new_zeros(batch, 0, self.head_dim)
        kv, weights = self.candidates(x)
        pooled = self.norm((kv * weights).sum(dim=2))  # (batch, n, head_dim)
        angles = rope_angles(torch.arange(n, device=x.device) * self.rate, dim=self.rope_dim, theta=self.rope_theta)
        return rotate_tail(pooled, angles)


class LightningIndexer(nn.Module):
    """Picks, for each query, the ``index_topk`` compressed entries CSA attends to (V4 §2.3.1, eqs. 13-17).

    index(t, s) = sum_h w_{t,h} * ReLU(q_{t,h} . k_s): a few small heads (``index_heads`` of ``index_head_dim``) over
    the indexer's own compressed keys, ReLU instead of softmax, per-token head weights w; cheap enough to score
    every entry (V4 runs it in FP4).
    """

    def __init__(self, config: DeepSeekConfig):
        super().__init__()
        self.n_heads, self.head_dim, self.topk, self.rate = (config.index_heads, config.index_head_dim,
                                                             config.index_topk, config.csa_rate)
        self.rope_dim, self.rope_theta = config.rope_dim, config.compress_rope_theta
        self.compressor = Compressor(config.d_model, self.head_dim, self.rate, overlap=True, rope_dim=config.rope_dim,
                                     rope_theta=config.compress_rope_theta, rms_eps=config.rms_eps)
        self.q_up = nn.Linear(config.q_lora_rank, self.n_heads * self.head_dim, bias=False)
        self.head_weights = nn.Linear(config.d_model, self.n_heads, bias=False)

    def scores(self, x: torch.Tensor, q_latent: torch.Tensor) -> torch.Tensor:
        """(batch, seq, entries) index scores, -inf on entries a query may not see yet."""
        batch, seq, _ = x.shape
        keys = self.compressor(x)  # (batch, T, head_dim)
        angles = rope_angles(torch.arange(seq, device=x.device), dim=self.rope_dim, theta=self.rope_theta)
        q = self.q_up(q_latent).view(batch, seq, self.n_heads, self.head_dim)  # (batch, seq, H_I, c_I)
        q = rotate_tail(q.transpose(1, 2), angles).transpose(1, 2)
        per_head = F.relu(q @ keys.unsqueeze(1).transpose(-2, -1)) * self.head_dim ** -0.5  # (batch, seq, H_I, T)
        weights = self.head_weights(x) * self.n_heads ** -0.5  # (batch, seq, H_I)
        index = (per_head * weights.unsqueeze(-1)).sum(dim=2)  # (batch, seq, T)
        visible = finished_entries(seq, keys.shape[1], self.rate, x.device)
        return index.masked_fill(~visible, float("-inf"))

    def forward(self, x: torch.Tensor, q_latent: torch.Tensor) -> torch.Tensor:
        """(batch, seq, entries) bool: the entries each query keeps (finished ones only, at most index_topk)."""
        index = self.scores(x, q_latent)
        chosen = index.topk(min(self.topk, index.shape[-1]), dim=-1).indices
        selected = torch.zeros_like(index, dtype=torch.bool).scatter_(-1, chosen, True)
        return selected & (index > float("-inf"))


class HybridAttention(nn.Module):
    """One V4 attention layer of type ``kind``: "sliding", "csa" or "hca" (see the module docstring)."""

    def __init__(self, config: DeepSeekConfig, kind: str):
        super().__init__()
        self.kind, self.n_heads, self.head_dim, self.window = kind, config.n_heads, config.head_dim, config.sliding_window
        self.rope_dim, self.rms_eps, self.groups = config.rope_dim, config.rms_eps, config.o_groups
        # sliding-window layers use the main RoPE base; compressed layers share the compressors' base
        self.rope_theta = config.rope_theta if kind == "sliding" else config.compress_rope_theta
        self.q_down = nn.Linear(config.d_model, config.q_lora_rank, bias=False)
        self.q_norm = RMSNorm(config.q_lora_rank, eps=config.rms_eps)
        self.q_up = nn.Linear(config.q_lora_rank, self.n_heads * self.head_dim, bias=False)
        self.kv_proj = nn.Linear(config.d_model, self.head_dim, bias=False)  # one head: key and value at once
        self.kv_norm = RMSNorm(self.head_dim, eps=config.rms_eps)
        self.group_proj = nn.Linear(self.n_heads * self.head_dim // self.groups, self.groups * config.o_lora_rank,
                                    bias=False)  # g blocks (o_lora_rank, n_heads*head_dim/g), stacked
        self.out = nn.Linear(self.groups * config.o_lora_rank, config.d_model, bias=False)
        self.sinks = nn.Parameter(torch.zeros(self.n_heads))
        self.rate = {"csa": config.csa_rate, "hca": config.hca_rate}.get(kind)
        self.compressor = None if self.rate is None else Compressor(
            config.d_model, self.head_dim, self.rate, overlap=kind == "csa", rope_dim=self.rope_dim,
            rope_theta=config.compress_rope_theta, rms_eps=config.rms_eps)
        self.indexer = LightningIndexer(config) if kind == "csa" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, seq, d_model) -> (batch, seq, d_model), causal."""
        batch, seq, _ = x.shape
        angles = rope_angles(torch.arange(seq, device=x.device), dim=self.rope_dim, theta=self.rope_theta)
        q_latent = self.q_norm(self.q_down(x))
        q = self.q_up(q_latent).view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)  # (batch, H, seq, c)
        q = rotate_tail(unit_rms(q, self.rms_eps), angles)
        kv = rotate_tail(self.kv_norm(self.kv_proj(x)), angles)  # (batch, seq, c): key and value
        scale = self.head_dim ** -0.5
        scores = (q @ kv.unsqueeze(1).transpose(-2, -1)) * scale  # (batch, H, seq, seq)
        i, j = torch.arange(seq, device=x.device)[:, None], torch.arange(seq, device=x.device)
        in_window = (j <= i) & (j > i - self.window)
        scores = scores.masked_fill(~in_window, float("-inf"))
        values = kv
        if self.compressor is not None:
            entries = self.compressor(x)  # (batch, T, c)
            visible = finished_entries(seq, entries.shape[1], self.rate, x.device).expand(batch, -1, -1)
            if self.indexer is not None:
                visible = visible & self.indexer(x, q_latent)  # (batch, seq, T)
            entry_scores = (q @ entries.unsqueeze(1).transpose(-2, -1)) * scale  # (batch, H, seq, T)
            scores = torch.cat([scores, entry_scores.masked_fill(~visible.unsqueeze(1), float("-inf"))], dim=-1)
            values = torch.cat([kv, entries], dim=1)
        sinks = self.sinks.view(1, -1, 1, 1).expand(batch, -1, seq, 1)  # one extra logit per head
        logits = torch.cat([scores, sinks], dim=-1)
        probs = (logits - logits.amax(-1, keepdim=True)).softmax(-1)[..., :-1]  # the sink takes mass, gives nothing
        heads = probs @ values.unsqueeze(1)  # (batch, H, seq, c)
        # the values carried RoPE too: rotating back by the query's position leaves only relative positions
        heads = rotate_tail(heads, -angles)
        grouped = heads.transpose(1, 2).reshape(batch, seq, self.groups, -1)  # (batch, seq, g, H*c/g)
        blocks = self.group_proj.weight.view(self.groups, -1, grouped.shape[-1])  # (g, o_lora_rank, H*c/g)
        mixed = torch.einsum("bsgi,goi->bsgo", grouped, blocks).flatten(2)  # (batch, seq, g * o_lora_rank)
        return self.out(mixed)
