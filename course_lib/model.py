"""The model builder: one function that turns a ``ModelConfig`` into a model, above all the parts.

``transformer`` knows nothing of experts, ``moe`` and ``mtp`` build on ``transformer``, and this module is the
only place that knows which block gets which FFN: dense SwiGLU in the first ``first_dense_layers`` blocks
(DeepSeek-V3's ``first_k_dense_replace``), hash-routed MoE in the next ``hash_layers`` (DeepSeek-V4), learned
routing after that; the MTP module's block counts as layer ``n_layers``. Used from notebook 02 on.
"""
from __future__ import annotations

import torch.nn as nn

from .config import DeepSeekConfig, ModelConfig
from .deepseek import DeepSeekModel
from .moe import scheduled_moe
from .mtp import MTPModule
from .transformer import Block, Transformer, dense_ffn


def layer_ffn(config: ModelConfig, layer_index: int) -> nn.Module:
    """The FFN of block ``layer_index``: dense, hash-routed MoE or MoE, by the config's layer schedule."""
    moe = scheduled_moe(config.moe, layer_index, d_model=config.d_model, vocab_size=config.vocab_size)
    return dense_ffn(config, layer_index) if moe is None else moe


def build_model(config: ModelConfig | DeepSeekConfig) -> Transformer | DeepSeekModel:
    """A freshly initialised model for ``config``: dense or MoE, with an MTP module when ``mtp_depth`` is 1; for a
    DeepSeekConfig, notebook 11's mini DeepSeek-V3 or V4 (course_lib.deepseek).

    Modules are created in a fixed order (each block's FFN before its attention; the MTP module last), so a seed
    gives the same weights every time.
    """
    if isinstance(config, DeepSeekConfig):
        return DeepSeekModel(config)

    def mtp_factory() -> MTPModule:
        return MTPModule(config.d_model, lambda: Block(config, layer_ffn(config, config.n_layers)))

    return Transformer(config, ffn_factory=layer_ffn, mtp_factory=mtp_factory if config.mtp_depth else None)
