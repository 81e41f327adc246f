"""A small decoder-only transformer whose feed-forward block is a pluggable part.

Read top to bottom in build order: config, RMSNorm, causal self-attention, the SwiGLU FFN, the block, the
model, then counting (parameters and FLOPs per token) and sampling. Notebook 01 builds each piece step by
step; notebook 02 swaps the FFN for a Mixture-of-Experts layer without touching anything else here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import VOCAB_SIZE


@dataclass
class ModelConfig:
    vocab_size: int = VOCAB_SIZE
    context_length: int = 64  # longest sequence the model accepts (learned position embeddings)
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    ffn_hidden: int = 352  # SwiGLU hidden width; about 8/3 * d_model keeps the FFN near the usual 8 d^2 params
    moe: dict | None = field(default=None)  # MoE settings for the FFN (notebook 02); None = dense everywhere
    mtp_depth: int = 0  # 1 adds DeepSeek-V3's multi-token-prediction module (notebook 08)
    mtp_loss_weight: float = 0.3  # its loss weight in training (V3: 0.3, later 0.1)

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads", "ffn_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.mtp_depth not in (0, 1):
            raise ValueError(f"mtp_depth must be 0 or 1 (the course implements V3's depth-1 MTP), got {self.mtp_depth}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}: each head gets "
                f"d_model / n_heads dimensions. Pick n_heads among the divisors of {self.d_model}."
            )

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    """x / rms(x) * gain: LayerNorm without the mean subtraction and bias, as in Llama and DeepSeek."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, seq, d_model = x.shape
        q, k, v = self.qkv(x).split(d_model, dim=-1)  # 3 x (batch, seq, d_model)
        # (batch, seq, d_model) -> (batch, n_heads, seq, head_dim)
        return tuple(t.view(batch, seq, self.n_heads, d_model // self.n_heads).transpose(1, 2) for t in (q, k, v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        q, k, v = self._heads(x)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (batch, n_heads, seq, head_dim)
        return self.out(y.transpose(1, 2).reshape(batch, seq, d_model))  # heads back side by side

    @torch.no_grad()
    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The (batch, n_heads, seq, seq) attention probabilities, written out for inspection (notebook 01)."""
        q, k, _ = self._heads(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (batch, n_heads, seq, seq)
        future = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device).triu(1)
        return scores.masked_fill(future, float("-inf")).softmax(-1)


class SwiGLU(nn.Module):
    """The dense FFN: down(silu(gate(x)) * up(x)). Gate and up are one matmul, split after."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.hidden, dim=-1)
        return self.down(F.silu(gate) * up)


FFNFactory = Callable[[ModelConfig, int], nn.Module]  # (config, layer_index) -> the block's feed-forward module


def dense_ffn(config: ModelConfig, layer_index: int) -> nn.Module:
    return SwiGLU(config.d_model, config.ffn_hidden)


def default_ffn(config: ModelConfig, layer_index: int) -> nn.Module:
    """Dense SwiGLU, or the MoE layer that ``config.moe`` describes (see course_lib.moe)."""
    if config.moe is None:
        return dense_ffn(config, layer_index)
    from .moe import moe_ffn  # imported here: the MoE module builds on this one

    return moe_ffn(config, layer_index)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, ffn: nn.Module):
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ffn_norm = RMSNorm(config.d_model)
        self.ffn = ffn

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))  # pre-norm residual stream
        if getattr(self.ffn, "needs_token_ids", False):  # hash-routed MoE layers route by token id
            return x + self.ffn(self.ffn_norm(x), token_ids=token_ids)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    """Token + position embeddings, ``n_layers`` blocks, a final norm and an output head tied to the embedding."""

    def __init__(self, config: ModelConfig, *, ffn_factory: FFNFactory = default_ffn):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = nn.Embedding(config.context_length, config.d_model)
        self.blocks = nn.ModuleList(Block(config, ffn_factory(config, i)) for i in range(config.n_layers))
        self.final_norm = RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.token_embedding.weight  # weight tying: one matrix for bytes in and out
        self.mtp = None
        if config.mtp_depth:
            from .mtp import MTPModule  # imported here: the MTP module builds on this one

            self.mtp = MTPModule(config)
        self.last_hidden: torch.Tensor | None = None  # the last block's output, for the MTP loss
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith(("attn.out.weight", "down.weight")):  # residual projections, scaled as in GPT-2
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs: (batch, seq) long token ids, seq <= context_length. Returns (batch, seq, vocab) logits."""
        if inputs.dim() != 2 or inputs.dtype != torch.long:
            raise ValueError(f"inputs must be a (batch, seq) tensor of dtype long, got {tuple(inputs.shape)} {inputs.dtype}")
        seq = inputs.shape[1]
        if seq > self.config.context_length:
            raise ValueError(
                f"sequence length {seq} exceeds context_length={self.config.context_length}; "
                f"crop the input to its last {self.config.context_length} tokens or build a model with a longer context."
            )
        positions = torch.arange(seq, device=inputs.device)
        x = self.token_embedding(inputs) + self.position_embedding(positions)  # (batch, seq, d_model)
        for block in self.blocks:
            x = block(x, inputs)
        self.last_hidden = x
        return self.head(self.final_norm(x))

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self(inputs)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # (batch*seq, vocab) vs (batch*seq,)


# ---- counting ----------------------------------------------------------------------------------------------

def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (a tied matrix counts once)."""
    return sum(p.numel() for p in model.parameters())


def dense_parameter_formula(config: ModelConfig) -> dict[str, int]:
    """Parameters of the dense model by component, from the config alone (notebook 01 checks it)."""
    d, layers = config.d_model, config.n_layers
    return {
        "embeddings (tied with the head)": config.vocab_size * d + config.context_length * d,
        "attention": layers * 4 * d * d,
        "ffn": layers * 3 * d * config.ffn_hidden,
        "norms": (2 * layers + 1) * d,
    }


def dense_flops_per_token(config: ModelConfig) -> dict[str, int]:
    """Forward FLOPs per token by component (a multiply-add counts 2), at a full context.

    Attention scores and values cost 2 * 2 * context * d per token: the fused kernel multiplies the whole
    context-by-context square, causal mask or not. Training costs about 3x this (forward + backward).
    """
    d, layers, context = config.d_model, config.n_layers, config.context_length
    return {
        "attention projections": layers * 2 * 4 * d * d,
        "attention scores and values": layers * 2 * 2 * context * d,
        "ffn": layers * 2 * 3 * d * config.ffn_hidden,
        "output head": 2 * d * config.vocab_size,
    }


def measured_flops_per_token(model: Transformer, *, batch_size: int = 2) -> float:
    """Count the FLOPs the model really executes on full-context inputs, with torch's FlopCounterMode."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    inputs = torch.zeros(batch_size, model.config.context_length, dtype=torch.long,
                         device=next(model.parameters()).device)
    # the math backend runs attention as plain matmuls, which the counter sees (the fused CPU kernel is not counted)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(inputs)
    return counter.get_total_flops() / inputs.numel()


# ---- sampling ----------------------------------------------------------------------------------------------

@torch.no_grad()
def generate(model: Transformer, prompt: torch.Tensor, *, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample ``max_new_tokens`` after the 1-D ``prompt``; temperature 0 means greedy."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    was_training = model.training
    model.eval()
    tokens = prompt.clone().to(next(model.parameters()).device)
    for _ in range(max_new_tokens):
        logits = model(tokens[-model.config.context_length:][None])[0, -1]  # (vocab,)
        if temperature == 0:
            next_token = logits.argmax()[None]
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            next_token = torch.multinomial(logits.softmax(-1).cpu(), 1, generator=generator).to(tokens.device)
        tokens = torch.cat([tokens, next_token])
    model.train(was_training)
    return tokens
