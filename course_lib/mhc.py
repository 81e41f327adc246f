"""Manifold-constrained hyper-connections (mHC), DeepSeek-V4 §2.2 (Xie et al. 2025, arXiv:2512.24880), taught in notebook 11.

A plain residual stream is one vector per token: x_{l+1} = x_l + F_l(x_l). Hyper-connections widen it to n
streams (n_hc = 4 in V4) and learn how to read them, write to them and mix them, per token:

    block input  = sum_i pre_i * X_i                    (collapse: pre = sigmoid(.) > 0)
    X_{l+1}      = B_l^T X_l + post (x) F_l(block input)  (mix the streams, add the output to each: post = 2 sigmoid(.))

(The report writes the mixing as B_l X_l and normalises rows last; the code here, as transformers', computes the
transposed matrix, normalising columns last, and applies its transpose: the same map.) Unconstrained, the mixing
matrices B_l multiply over depth and the signal can blow up or vanish. mHC projects
each B_l onto the doubly-stochastic matrices (non-negative, every row and column summing to 1) with a few
Sinkhorn-Knopp iterations: their spectral norm is at most 1 and their product over any depth stays doubly
stochastic, so mixing can never amplify the residual stream (notebook 11 measures it).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def unit_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / rms(x) over the last axis, without a learned gain."""
    return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps).to(x.dtype)


def sinkhorn(logits: torch.Tensor, *, iters: int, eps: float = 1e-6) -> torch.Tensor:
    """(..., n, n) logits -> nearly doubly-stochastic matrices: a row softmax, then alternately normalise the
    columns and the rows (Sinkhorn & Knopp 1967). ``iters`` column normalisations in all (V4: t_max = 20)."""
    matrix = logits.softmax(-1) + eps
    matrix = matrix / (matrix.sum(-2, keepdim=True) + eps)
    for _ in range(iters - 1):
        matrix = matrix / (matrix.sum(-1, keepdim=True) + eps)
        matrix = matrix / (matrix.sum(-2, keepdim=True) + eps)
    return matrix


class HyperConnection(nn.Module):
    """The weights that read, write and mix ``n_streams`` residual streams around one block (attention or FFN).

    They depend on the token: one linear map of the RMS-normalised, concatenated streams gives n pre weights,
    n post weights and n*n mixing logits; ``base`` adds static terms and ``scale`` scales the dynamic part of each.
    ``constrained=False`` skips the Sinkhorn projection (a row softmax only), for notebook 11's comparison.
    """

    def __init__(self, n_streams: int, d_model: int, *, sinkhorn_iters: int = 20, eps: float = 1e-6,
                 rms_eps: float = 1e-6, constrained: bool = True):
        super().__init__()
        self.n, self.iters, self.eps, self.rms_eps, self.constrained = n_streams, sinkhorn_iters, eps, rms_eps, constrained
        self.fn = nn.Parameter(torch.empty((2 + n_streams) * n_streams, n_streams * d_model))
        self.base = nn.Parameter(torch.zeros((2 + n_streams) * n_streams))
        self.scale = nn.Parameter(torch.ones(3))
        nn.init.normal_(self.fn, std=0.02)

    def weights(self, streams: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """streams (batch, seq, n, d) -> pre (batch, seq, n), post (batch, seq, n), mix (batch, seq, n, n)."""
        n = self.n
        mixed = F.linear(unit_rms(streams.flatten(2).float(), self.rms_eps), self.fn.float())  # (batch, seq, (2+n)n)
        pre_w, post_w, mix_w = mixed.split([n, n, n * n], dim=-1)
        pre_b, post_b, mix_b = self.base.split([n, n, n * n])
        pre = torch.sigmoid(pre_w * self.scale[0] + pre_b) + self.eps
        post = 2 * torch.sigmoid(post_w * self.scale[1] + post_b)
        mix_logits = (mix_w * self.scale[2] + mix_b).unflatten(-1, (n, n))  # (batch, seq, n*n) -> (batch, seq, n, n)
        mix = sinkhorn(mix_logits, iters=self.iters, eps=self.eps) if self.constrained else mix_logits.softmax(-1)
        return pre, post, mix

    def forward(self, streams: torch.Tensor, block: nn.Module, *args) -> tuple[torch.Tensor, object]:
        """Run ``block(collapsed input, *args)`` and return the new (batch, seq, n, d) streams and what else the
        block returned (an MoE's routing), or None."""
        pre, post, mix = self.weights(streams)
        collapsed = (pre.unsqueeze(-1) * streams).sum(dim=2).to(streams.dtype)  # (batch, seq, d)
        result = block(collapsed, *args)
        out, extra = result if isinstance(result, tuple) else (result, None)
        # stream k receives sum_j mix[j, k] X_j (B^T X) plus its share post_k of the block's output
        new = mix.to(streams.dtype).transpose(-1, -2) @ streams + post.to(streams.dtype).unsqueeze(-1) * out.unsqueeze(-2)
        return new, extra


class HyperHead(nn.Module):
    """Collapses the n streams into one vector per token before the final norm (pre weights only)."""

    def __init__(self, n_streams: int, d_model: int, *, eps: float = 1e-6, rms_eps: float = 1e-6):
        super().__init__()
        self.eps, self.rms_eps = eps, rms_eps
        self.fn = nn.Parameter(torch.empty(n_streams, n_streams * d_model))
        self.base = nn.Parameter(torch.zeros(n_streams))
        self.scale = nn.Parameter(torch.ones(1))
        nn.init.normal_(self.fn, std=0.02)

    def forward(self, streams: torch.Tensor) -> torch.Tensor:
        """(batch, seq, n, d) -> (batch, seq, d)."""
        logits = F.linear(unit_rms(streams.flatten(2).float(), self.rms_eps), self.fn.float())  # (batch, seq, n)
        pre = torch.sigmoid(logits * self.scale + self.base) + self.eps
        return (pre.unsqueeze(-1) * streams).sum(dim=2).to(streams.dtype)
