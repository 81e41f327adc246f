"""DeepSeek-V3 and DeepSeek-V4 in miniature, from the course's parts (notebook 11).

    V3 block:  x = x + MLA(norm(x));           x = x + FFN(norm(x))        (FFN: dense SwiGLU, then MoE)
    V4 block:  X = mHC(X, HybridAttention . norm);  X = mHC(X, MoE . norm)   (X: n residual streams)

The parts live in their own modules: ``mla`` (V3's latent attention), ``v4_attention`` (CSA, HCA, the sliding
window, the grouped output projection), ``mhc`` (hyper-connections), ``moe`` and ``routing`` (the experts and the
sigmoid, sqrt-softplus and hash routers of notebooks 02-03, with V4's clamped SwiGLU) and ``mtp``. The embedding
and the output head are separate matrices (DeepSeek does not tie them) and positions come from RoPE inside
attention. ``course_lib.hf_format.load_pretrained`` fills these models from a Hugging Face checkpoint; the tests
check them against transformers' ``DeepseekV3ForCausalLM`` and ``DeepseekV4ForCausalLM``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import DeepSeekConfig
from .mhc import HyperConnection, HyperHead
from .mla import MultiHeadLatentAttention
from .moe import scheduled_moe
from .mtp import MTPModule
from .routing import Routing
from .transformer import ModelOutput, RMSNorm, RoutedFFN, SwiGLU, mtp_predictions, run_blocks
from .v4_attention import HybridAttention


def deepseek_ffn(config: DeepSeekConfig, layer_index: int) -> nn.Module:
    """Dense SwiGLU in the first ``first_dense_layers`` blocks, hash-routed MoE in the next ``hash_layers``, then MoE."""
    moe = scheduled_moe(config.moe, layer_index, d_model=config.d_model, vocab_size=config.vocab_size)
    if moe is not None:
        return moe
    return SwiGLU(config.d_model, config.dense_hidden, limit=config.moe.swiglu_limit if config.moe else None)


class DeepSeekBlock(nn.Module):
    """One block; its residual is a (batch, seq, d) stream (V3) or (batch, seq, n, d) hyper-connected streams (V4)."""

    def __init__(self, config: DeepSeekConfig, layer_index: int):
        super().__init__()
        kind = config.attention[min(layer_index, config.n_layers - 1)]  # the MTP block repeats the last layer's
        self.attn_norm = RMSNorm(config.d_model, eps=config.rms_eps)
        self.attn = MultiHeadLatentAttention(config) if kind == "mla" else HybridAttention(config, kind)
        self.ffn_norm = RMSNorm(config.d_model, eps=config.rms_eps)
        self.ffn = deepseek_ffn(config, layer_index)
        self.attn_hc = self.ffn_hc = None
        if config.hc_streams > 1:
            hc = dict(sinkhorn_iters=config.sinkhorn_iters, eps=config.hc_eps, rms_eps=config.rms_eps)
            self.attn_hc = HyperConnection(config.hc_streams, config.d_model, **hc)
            self.ffn_hc = HyperConnection(config.hc_streams, config.d_model, **hc)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.attn_norm(x))

    def _ffn(self, x: torch.Tensor, token_ids: torch.Tensor | None) -> tuple[torch.Tensor, Routing | None]:
        if isinstance(self.ffn, RoutedFFN):
            return self.ffn(self.ffn_norm(x), token_ids=token_ids, return_routing=True)
        return self.ffn(self.ffn_norm(x)), None

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, Routing | None]:
        if self.attn_hc is None:
            x = x + self._attention(x)
            out, routing = self._ffn(x, token_ids)
            return x + out, routing
        x, _ = self.attn_hc(x, self._attention)
        return self.ffn_hc(x, self._ffn, token_ids)


class StreamedBlock(nn.Module):
    """A V4 block on a single stream, for the MTP module: widen to n streams, run, collapse with its own head.

    transformers does not build V4's MTP layer, so unlike the rest of this file nothing independent checks it; it
    follows the report's "MTP identical to DeepSeek-V3" (§2) with V4's streams around its block. DeepSeek's
    released inference code (seen only in copies) differs in two ways: it feeds the main model's uncollapsed
    streams to the MTP block, and V4-Flash's MTP layer is a sliding-window one, where this one repeats the last
    layer's attention type."""

    def __init__(self, config: DeepSeekConfig, layer_index: int):
        super().__init__()
        self.n = config.hc_streams
        self.block = DeepSeekBlock(config, layer_index)
        self.head = HyperHead(config.hc_streams, config.d_model, eps=config.hc_eps, rms_eps=config.rms_eps)

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, Routing | None]:
        streams = x.unsqueeze(2).expand(-1, -1, self.n, -1)  # (batch, seq, d) -> (batch, seq, n, d)
        streams, routing = self.block(streams, token_ids)
        return self.head(streams), routing


class DeepSeekModel(nn.Module):
    """Embedding, ``n_layers`` DeepSeek blocks, (V4: the streams' head), final norm, untied output head, MTP."""

    def __init__(self, config: DeepSeekConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(DeepSeekBlock(config, i) for i in range(config.n_layers))
        self.hc_head = HyperHead(config.hc_streams, config.d_model, eps=config.hc_eps,
                                 rms_eps=config.rms_eps) if config.hc_streams > 1 else None
        self.final_norm = RMSNorm(config.d_model, eps=config.rms_eps)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        block = StreamedBlock if config.hc_streams > 1 else DeepSeekBlock
        self.mtp = MTPModule(config.d_model, lambda: block(config, config.n_layers)) if config.mtp_depth else None
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def moe_layers(self) -> list[nn.Module]:
        """Every FFN that routes tokens, the MTP module's included, in the order of ``ModelOutput.routing``."""
        return [m for m in self.modules() if isinstance(m, RoutedFFN)]

    def forward(self, inputs: torch.Tensor, *, targets: torch.Tensor | None = None,
                return_aux: bool = False) -> torch.Tensor | ModelOutput:
        """inputs: (batch, seq) long token ids -> (batch, seq, vocab) logits, or a ModelOutput with ``return_aux``."""
        if inputs.dim() != 2 or inputs.dtype != torch.long:
            raise ValueError(f"inputs must be a (batch, seq) tensor of dtype long, got {tuple(inputs.shape)} {inputs.dtype}")
        x = self.token_embedding(inputs)  # (batch, seq, d)
        if self.hc_head is not None:
            x = x.unsqueeze(2).expand(-1, -1, self.config.hc_streams, -1)  # every stream starts as the embedding
        x, hidden_states, routing = run_blocks(self.blocks, x, inputs)
        last = self.hc_head(x) if self.hc_head is not None else x  # (batch, seq, n, d) -> (batch, seq, d)
        logits = self.head(self.final_norm(last))
        if not return_aux:
            return logits
        mtp_logits = mtp_predictions(self, last, targets, routing)  # appends the MTP block's routing
        return ModelOutput(logits, hidden_states, tuple(routing), mtp_logits)
