"""Number formats for MoE weights: simulated block-scaled 4-bit floats, and a NumPy reference MoE (notebook 06).

FP4 here is E2M1, the element format of the OCP microscaling format MXFP4: a sign and the magnitudes
{0, 0.5, 1, 1.5, 2, 3, 4, 6}; each block of 32 consecutive values shares one power-of-two scale (8 bits), chosen
so that the block's largest magnitude fits under 6 * scale. DeepSeek-V4's instruct checkpoints store their expert
weights this way (model card: "MoE expert parameters use FP4 precision"). We *simulate* it: quantise, then
dequantise back to float32, and measure what changes.
"""
from __future__ import annotations

import numpy as np
import torch

FP4_E2M1_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
FP4_MAX = 6.0


def quantize_fp4_blockwise(weight: torch.Tensor, *, block: int = 32, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Round ``weight`` to E2M1 values times a power-of-two scale per block of ``block`` consecutive values along
    ``dim`` (whose size must be a multiple of ``block``). Returns (dequantised weight, scales with ``dim`` last,
    shape (..., n_blocks)).

    Error bound, per element: |w - q| <= scale, since the widest gap between neighbouring E2M1 values is 2
    (between 4 and 6) and rounding to the nearest value errs by at most half a gap.
    """
    if dim not in (-1, weight.dim() - 1):
        quantised, scale = quantize_fp4_blockwise(weight.movedim(dim, -1), block=block)
        return quantised.movedim(-1, dim), scale
    if weight.shape[-1] % block:
        raise ValueError(f"the last dimension ({weight.shape[-1]}) must be a multiple of the block size {block}")
    blocks = weight.detach().float().reshape(*weight.shape[:-1], -1, block)  # (..., n_blocks, block)
    largest = blocks.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    scale = torch.exp2(torch.ceil(torch.log2(largest / FP4_MAX)))  # power of two with largest <= 6 * scale
    magnitudes = (blocks.abs() / scale).unsqueeze(-1)  # (..., n_blocks, block, 1)
    nearest = (magnitudes - FP4_E2M1_VALUES).abs().argmin(-1)
    quantised = FP4_E2M1_VALUES[nearest] * blocks.sign() * scale
    return quantised.reshape(weight.shape).to(weight.dtype), scale.squeeze(-1)


def fp4_error_bound(weight: torch.Tensor, *, block: int = 32, dim: int = -1) -> torch.Tensor:
    """The per-element bound of quantize_fp4_blockwise: each element's block scale."""
    _, scale = quantize_fp4_blockwise(weight, block=block, dim=dim)
    moved = weight.movedim(dim, -1)
    return scale.unsqueeze(-1).expand(*scale.shape, block).reshape(moved.shape).movedim(-1, dim)


# ---- a framework-agnostic reference: the MoE forward pass in NumPy ----------------------------------------------

def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def moe_forward_numpy(x: np.ndarray, *, gate: np.ndarray, w_gate_up: np.ndarray, w_down: np.ndarray, top_k: int,
                      score: str = "softmax", normalize: bool = False, routed_scaling: float = 1.0,
                      bias: np.ndarray | None = None, shared_gate_up: np.ndarray | None = None,
                      shared_down: np.ndarray | None = None) -> np.ndarray:
    """The course MoE layer (token-choice top-k, dropless) in plain NumPy, weights in nn.Linear (out, in) layout.

    x: (T, d); gate: (E, d); w_gate_up: (E, 2h, d); w_down: (E, d, h). Mirrors course_lib.moe.MoE without torch.
    """
    logits = x @ gate.T  # (T, E)
    if score == "softmax":
        shifted = np.exp(logits - logits.max(-1, keepdims=True))
        scores = shifted / shifted.sum(-1, keepdims=True)
    elif score == "sigmoid":
        scores = 1.0 / (1.0 + np.exp(-logits))
    elif score == "sqrt_softplus":
        scores = np.sqrt(np.logaddexp(0.0, logits))
    else:
        raise ValueError(f"score must be softmax, sigmoid or sqrt_softplus, got {score!r}")
    selection = scores + (bias if bias is not None else 0.0)
    indices = np.argsort(-selection, axis=-1, kind="stable")[:, :top_k]  # (T, k)
    weights = np.take_along_axis(scores, indices, axis=-1)
    if normalize:
        weights = weights / (weights.sum(-1, keepdims=True) + 1e-20)
    weights = weights * routed_scaling
    hidden = w_down.shape[-1]
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(top_k):
            e = indices[t, j]
            gate_up = w_gate_up[e] @ x[t]
            out[t] += weights[t, j] * (w_down[e] @ (_silu(gate_up[:hidden]) * gate_up[hidden:]))
    if shared_gate_up is not None:
        gate_up = x @ shared_gate_up.T
        shared_hidden = shared_gate_up.shape[0] // 2
        out += (_silu(gate_up[:, :shared_hidden]) * gate_up[:, shared_hidden:]) @ shared_down.T
    return out


def numpy_weights(moe) -> dict:
    """A course MoE layer's weights as NumPy arrays, in the keyword form moe_forward_numpy takes."""
    config = moe.router.config
    array = lambda tensor: tensor.detach().cpu().numpy()  # from whatever device the layer is on
    weights = dict(gate=array(moe.router.gate.weight), w_gate_up=array(moe.w_gate_up), w_down=array(moe.w_down),
                   top_k=moe.top_k, score=config.score, normalize=config.normalize,
                   routed_scaling=config.routed_scaling, bias=array(moe.router.bias))
    if moe.shared is not None:
        weights.update(shared_gate_up=array(moe.shared.gate_up.weight), shared_down=array(moe.shared.down.weight))
    return weights
