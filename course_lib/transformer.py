"""A small decoder-only transformer whose feed-forward block is a pluggable part.

Read top to bottom in build order: RMSNorm, causal self-attention, the SwiGLU FFN, the block, what the model
returns (``ModelOutput``, with the losses computed from it), the model, then counting (parameters and FLOPs per
token) and sampling. Notebook 01 builds each piece step by step; notebook 02 swaps the FFN for a
Mixture-of-Experts layer without touching anything else here. This module imports no MoE code: an FFN that
routes tokens implements ``RoutedFFN``, and ``course_lib.model.build_model`` puts the parts together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .hardware import model_device

if TYPE_CHECKING:
    from .routing import Routing

__all__ = ["ModelConfig", "RMSNorm", "CausalSelfAttention", "SwiGLU", "RoutedFFN", "Block", "ModelOutput",
           "swiglu", "Transformer", "run_blocks", "mtp_predictions", "dense_ffn", "attention_map", "count_parameters", "dense_parameter_formula",
           "dense_flops_per_token", "measured_flops_per_token", "generate"]


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
    """The dense FFN: down(silu(gate(x)) * up(x)). Gate and up are one matmul, split after.

    limit: DeepSeek-V4's clamped SwiGLU (gate <= limit, -limit <= up <= limit), which keeps rare huge activations
    from overflowing low-precision formats (V4 report §4.2.3); None leaves them unclamped.
    """

    def __init__(self, d_model: int, hidden: int, *, limit: float | None = None):
        super().__init__()
        self.hidden, self.limit = hidden, limit
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.hidden, dim=-1)
        return self.down(swiglu(gate, up, self.limit))


def swiglu(gate: torch.Tensor, up: torch.Tensor, limit: float | None = None, *,
           scale: torch.Tensor | None = None) -> torch.Tensor:
    """silu(gate) * up, with V4's clamps when a limit is given; ``scale`` multiplies up first (MoE routing weights)."""
    if limit is not None:
        gate, up = gate.clamp(max=limit), up.clamp(-limit, limit)
    return F.silu(gate) * (up if scale is None else up * scale)


class RoutedFFN(nn.Module):
    """An FFN that routes each token to experts (course_lib.moe.MoE is one).

    Its ``forward(x, token_ids=None, *, return_routing=False)`` returns the output, or ``(output, routing)``
    when asked: the block asks, so the model can return every layer's routing. Token ids are passed because
    hash routing chooses experts by token id.
    """


FFNFactory = Callable[[ModelConfig, int], nn.Module]  # (config, layer_index) -> the block's feed-forward module


def dense_ffn(config: ModelConfig, layer_index: int) -> nn.Module:
    return SwiGLU(config.d_model, config.ffn_hidden)


class Block(nn.Module):
    def __init__(self, config: ModelConfig, ffn: nn.Module):
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ffn_norm = RMSNorm(config.d_model)
        self.ffn = ffn

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, Routing | None]:
        """Returns the new residual stream and, when the FFN routes, its routing of these tokens."""
        x = x + self.attn(self.attn_norm(x))  # pre-norm residual stream
        if isinstance(self.ffn, RoutedFFN):
            out, routing = self.ffn(self.ffn_norm(x), token_ids=token_ids, return_routing=True)
            return x + out, routing
        return x + self.ffn(self.ffn_norm(x)), None


@dataclass
class ModelOutput:
    """What one forward pass computed, returned by ``model(inputs, return_aux=True)``."""
    logits: torch.Tensor  # (batch, seq, vocab) next-token logits
    hidden_states: tuple[torch.Tensor, ...]  # n_layers + 1 tensors (batch, seq, d): the embeddings, then each block's output
    routing: tuple[Routing, ...]  # one per MoE layer, in the order of model.moe_layers() (MTP's last, when it ran)
    mtp_logits: torch.Tensor | None = None  # (batch, seq-1, vocab) MTP's logits for token i+2, when targets were given

    def language_model_loss(self, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the next-token predictions; targets: (batch, seq)."""
        return F.cross_entropy(self.logits.flatten(0, 1), targets.flatten())  # (batch*seq, vocab) vs (batch*seq,)

    def mtp_loss(self, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of MTP's predictions of token i+2 (= targets[:, i+1]) at every position that has one."""
        if self.mtp_logits is None:
            raise ValueError("no MTP logits: the model has no MTP module, or it was called without targets")
        return F.cross_entropy(self.mtp_logits.flatten(0, 1), targets[:, 1:].flatten())


class Transformer(nn.Module):
    """Token + position embeddings, ``n_layers`` blocks, a final norm and an output head tied to the embedding.

    ffn_factory: builds each block's FFN (default: the dense SwiGLU). mtp_factory: builds the MTP module for a
    config with ``mtp_depth``. ``course_lib.model.build_model(config)`` passes both for MoE and MTP configs.
    """

    def __init__(self, config: ModelConfig, *, ffn_factory: FFNFactory | None = None,
                 mtp_factory: Callable[[], nn.Module] | None = None):
        super().__init__()
        if ffn_factory is None and config.moe is not None:
            raise ValueError("this config has MoE layers: build the model with course_lib.model.build_model(config)")
        if (mtp_factory is None) != (config.mtp_depth == 0):
            raise ValueError(f"mtp_depth={config.mtp_depth} needs an mtp_factory exactly when it is 1: "
                             f"build the model with course_lib.model.build_model(config)")
        ffn_factory = ffn_factory or dense_ffn
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = nn.Embedding(config.context_length, config.d_model)
        self.blocks = nn.ModuleList(Block(config, ffn_factory(config, i)) for i in range(config.n_layers))
        self.final_norm = RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.token_embedding.weight  # weight tying: one matrix for bytes in and out
        self.mtp = mtp_factory() if mtp_factory is not None else None
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith(("attn.out.weight", "down.weight")):  # residual projections, scaled as in GPT-2
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def moe_blocks(self) -> list[int]:
        """Indices of the blocks whose FFN routes tokens (the MTP module's block is not one of them)."""
        return [i for i, block in enumerate(self.blocks) if isinstance(block.ffn, RoutedFFN)]

    def moe_layers(self) -> list[nn.Module]:
        """Every FFN that routes tokens, the MTP module's included, in the order of ``ModelOutput.routing``."""
        mtp = [self.mtp.block.ffn] if self.mtp is not None and isinstance(self.mtp.block.ffn, RoutedFFN) else []
        return [self.blocks[i].ffn for i in self.moe_blocks()] + mtp

    def forward(self, inputs: torch.Tensor, *, targets: torch.Tensor | None = None,
                return_aux: bool = False) -> torch.Tensor | ModelOutput:
        """inputs: (batch, seq) long token ids, seq <= context_length.

        Returns the (batch, seq, vocab) logits, or with ``return_aux`` a ModelOutput. Targets (batch, seq) are
        needed only by the MTP module, which predicts token i+2 from token i+1's embedding.
        """
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
        x, hidden_states, routing = run_blocks(self.blocks, x, inputs)
        logits = self.head(self.final_norm(x))
        if not return_aux:
            return logits
        mtp_logits = mtp_predictions(self, x, targets, routing)  # appends the MTP block's routing
        return ModelOutput(logits, hidden_states, tuple(routing), mtp_logits)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The language-model loss of predicting ``targets`` (batch, seq) from ``inputs``."""
        return self(inputs, return_aux=True).language_model_loss(targets)


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor,
               token_ids: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], list[Routing]]:
    """Run the blocks in order: the last residual stream, every stream from the input on, each MoE's routing."""
    hidden_states, routing = [x], []
    for block in blocks:
        x, block_routing = block(x, token_ids)
        hidden_states.append(x)
        if block_routing is not None:
            routing.append(block_routing)
    return x, tuple(hidden_states), routing


def mtp_predictions(model: nn.Module, last: torch.Tensor, targets: torch.Tensor | None,
                    routing: list[Routing]) -> torch.Tensor | None:
    """The MTP module's logits from the (batch, seq, d) last hidden states (None without MTP or targets); its
    block's routing is appended to ``routing``. The module shares the model's embedding, final norm and head."""
    if model.mtp is None or targets is None:
        return None
    logits, mtp_routing = model.mtp(last, targets, embedding=model.token_embedding, final_norm=model.final_norm,
                                    head=model.head)
    if mtp_routing is not None:
        routing.append(mtp_routing)
    return logits


@torch.no_grad()
def attention_map(model: Transformer, tokens: torch.Tensor, *, layer: int) -> torch.Tensor:
    """(n_heads, seq, seq) attention probabilities of block ``layer`` for the 1-D ``tokens`` (notebook 01's viewer)."""
    device = model_device(model)
    inputs = tokens.to(device)[None]  # (1, seq)
    block = model.blocks[layer]
    x = model(inputs, return_aux=True).hidden_states[layer]  # the residual stream entering block `layer`
    return block.attn.attention_weights(block.attn_norm(x))[0]


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
                         device=model_device(model))
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
    tokens = prompt.clone().to(model_device(model))
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
