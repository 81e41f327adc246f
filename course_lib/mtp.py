"""Multi-token prediction (MTP), depth 1, as in DeepSeek-V3 (report §2.2), notebook 08.

At position i the main model predicts token i+1 from its last hidden state h_i. The MTP module predicts token
i+2: it combines RMSNorm(h_i) with RMSNorm(embedding of token i+1) through a linear map 2d -> d, runs one more
transformer block (causal, like the main ones), and reuses the main model's final norm and output head. Its loss
is added with a weight (V3: 0.3, then 0.1); at inference the module can simply be dropped.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .transformer import Block, ModelConfig, RMSNorm, default_ffn


class MTPModule(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.hidden_norm = RMSNorm(config.d_model)
        self.embedding_norm = RMSNorm(config.d_model)
        self.project = nn.Linear(2 * config.d_model, config.d_model, bias=False)
        self.block = Block(config, default_ffn(config, config.n_layers))  # an MoE block when the model has MoE

    def loss(self, model: nn.Module, hidden: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of predicting token i+2 at every position i that has one.

        hidden: (batch, seq, d) the main model's last hidden states; targets: (batch, seq) the next tokens.
        """
        next_embedding = model.token_embedding(targets[:, :-1])  # token i+1, (batch, seq-1, d)
        combined = torch.cat([self.hidden_norm(hidden[:, :-1]), self.embedding_norm(next_embedding)], dim=-1)
        x = self.block(self.project(combined), targets[:, :-1])  # (batch, seq-1, d)
        logits = model.head(model.final_norm(x))  # shared output head
        return F.cross_entropy(logits.flatten(0, 1), targets[:, 1:].flatten())  # token i+2 = targets[:, i+1]
