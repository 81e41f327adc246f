"""Multi-head latent attention (MLA), DeepSeek-V2 §2.1 and V3 §2.1.1, taught in notebook 11.

Plain multi-head attention caches, per token and layer, a key and a value for every head. MLA caches one small
latent c_KV (``kv_lora_rank`` channels) from which every head's key and value are *reconstructed* by an
up-projection, plus one shared RoPE key (``rope_dim`` channels): position has to travel separately, because a
rotation that depends on position cannot be folded into the up-projection ("decoupled RoPE").

    c_KV = RMSNorm(x W_DKV)                  k_h = [c_KV W_UK,h ; RoPE(x W_KR)]    v_h = c_KV W_UV,h
    q_h  = [q_nope,h ; RoPE(q_rope,h)]  from  RMSNorm(x W_DQ) W_UQ   (or x W_Q when q_lora_rank is None)

Because q_nope,h . (c_KV W_UK,h) = (q_nope,h W_UK,h^T) . c_KV, a decoder can fold W_UK into the query and W_UV
into the output and attend over the cached latents directly, never materialising a key or value: the
*absorbed* form (``forward(x, absorbed=True)``), equal to the plain one up to rounding.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import DeepSeekConfig
from .rope import rope_angles, rotate
from .transformer import RMSNorm


class MultiHeadLatentAttention(nn.Module):
    def __init__(self, config: DeepSeekConfig):
        super().__init__()
        self.n_heads, self.nope, self.rope, self.v_dim = config.n_heads, config.qk_nope_dim, config.rope_dim, config.v_head_dim
        self.kv_rank, self.rope_theta = config.kv_lora_rank, config.rope_theta
        qk_dim = self.nope + self.rope
        if config.q_lora_rank is None:  # small models (V2-Lite): one plain query projection
            self.q_proj = nn.Linear(config.d_model, self.n_heads * qk_dim, bias=False)
        else:
            self.q_down = nn.Linear(config.d_model, config.q_lora_rank, bias=False)
            self.q_norm = RMSNorm(config.q_lora_rank)
            self.q_up = nn.Linear(config.q_lora_rank, self.n_heads * qk_dim, bias=False)
        self.kv_down = nn.Linear(config.d_model, self.kv_rank + self.rope, bias=False)  # latent and shared RoPE key
        self.kv_norm = RMSNorm(self.kv_rank)
        self.kv_up = nn.Linear(self.kv_rank, self.n_heads * (self.nope + self.v_dim), bias=False)
        self.out = nn.Linear(self.n_heads * self.v_dim, config.d_model, bias=False)
        self.scale = qk_dim ** -0.5

    def queries(self, x: torch.Tensor, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, heads, seq, nope) position-free and (batch, heads, seq, rope) rotated query parts."""
        batch, seq, _ = x.shape
        q = self.q_proj(x) if hasattr(self, "q_proj") else self.q_up(self.q_norm(self.q_down(x)))
        q = q.view(batch, seq, self.n_heads, -1).transpose(1, 2)  # (batch, seq, H*qk) -> (batch, H, seq, qk)
        q_nope, q_rope = q.split([self.nope, self.rope], dim=-1)
        return q_nope, rotate(q_rope, angles)

    def latents(self, x: torch.Tensor, angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What MLA caches per token: the (batch, seq, kv_lora_rank) latent and the (batch, seq, rope) RoPE key."""
        latent, k_rope = self.kv_down(x).split([self.kv_rank, self.rope], dim=-1)
        return self.kv_norm(latent), rotate(k_rope, angles)

    def forward(self, x: torch.Tensor, *, absorbed: bool = False) -> torch.Tensor:
        """x: (batch, seq, d_model) -> (batch, seq, d_model), causal. ``absorbed`` attends over the latents."""
        batch, seq, _ = x.shape
        angles = rope_angles(torch.arange(seq, device=x.device), dim=self.rope, theta=self.rope_theta)
        q_nope, q_rope = self.queries(x, angles)
        latent, k_rope = self.latents(x, angles)
        w_up = self.kv_up.weight.view(self.n_heads, self.nope + self.v_dim, self.kv_rank)  # per head: [W_UK; W_UV]
        w_uk, w_uv = w_up.split([self.nope, self.v_dim], dim=1)  # (H, nope, rank), (H, v, rank)
        rope_scores = q_rope @ k_rope.unsqueeze(1).transpose(-2, -1)  # (batch, H, seq, seq), one key for all heads
        if absorbed:
            q_latent = torch.einsum("bhsn,hnr->bhsr", q_nope, w_uk)  # W_UK folded into the query
            scores = q_latent @ latent.unsqueeze(1).transpose(-2, -1) + rope_scores
            context = self._softmax(scores) @ latent.unsqueeze(1)  # (batch, H, seq, rank): still latent
            heads = torch.einsum("bhsr,hvr->bhsv", context, w_uv)  # W_UV applied after attention
        else:
            kv = self.kv_up(latent).view(batch, seq, self.n_heads, -1).transpose(1, 2)  # (batch, H, seq, nope+v)
            k_nope, v = kv.split([self.nope, self.v_dim], dim=-1)
            scores = q_nope @ k_nope.transpose(-2, -1) + rope_scores
            heads = self._softmax(scores) @ v  # (batch, H, seq, v)
        return self.out(heads.transpose(1, 2).reshape(batch, seq, -1))  # heads side by side

    def _softmax(self, scores: torch.Tensor) -> torch.Tensor:
        future = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).triu(1)
        return (scores * self.scale).masked_fill(future, float("-inf")).softmax(-1)

    def cache_values_per_token(self) -> int:
        """Values cached per token in this layer: the latent and the shared RoPE key (plain MHA: H * (qk + v))."""
        return self.kv_rank + self.rope
