"""Rotary position embeddings (RoPE, Su et al. 2021) as DeepSeek lays them out, taught in notebook 11.

A query or key of ``dim`` channels is read as dim/2 consecutive pairs (x0, x1), (x2, x3), ...; pair i at position
p is rotated by the angle p * theta^(-2i/dim). The dot product of a rotated query and a rotated key then depends
only on their distance. DeepSeek rotates only a few channels of each head ("decoupled" RoPE in V3's MLA, the last
64 of 512 in V4) and leaves the rest position-free, which is what lets MLA cache a position-free latent.
"""
from __future__ import annotations

import torch


def rope_angles(positions: torch.Tensor, *, dim: int, theta: float) -> torch.Tensor:
    """(..., dim/2) rotation angles of the given integer positions (any shape)."""
    if dim % 2:
        raise ValueError(f"RoPE rotates channel pairs: dim must be even, got {dim}")
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim)
    return positions.float()[..., None] * inv_freq


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs of x (..., seq, dim) by angles (seq, dim/2); ``-angles`` undoes it."""
    pairs = x.float().unflatten(-1, (-1, 2))  # (..., seq, dim) -> (..., seq, dim/2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    cos, sin = angles.cos(), angles.sin()
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2).to(x.dtype)


def rotate_tail(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate only the last 2 * angles.shape[-1] channels of x (V4's partial RoPE), the others pass unchanged."""
    rope_dim = 2 * angles.shape[-1]
    return torch.cat([x[..., :-rope_dim], rotate(x[..., -rope_dim:], angles)], dim=-1)
