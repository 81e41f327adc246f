"""Multi-token prediction (MTP), depth 1, as in DeepSeek-V3 (report §2.2), notebook 08.

At position i the main model predicts token i+1 from its last hidden state h_i. The MTP module predicts token
i+2: it combines RMSNorm(h_i) with RMSNorm(embedding of token i+1) through a linear map 2d -> d, runs one more
transformer block (causal, like the main ones), and reuses the main model's embedding, final norm and output
head. Its loss (``ModelOutput.mtp_loss``) is added with a weight (V3: 0.3, then 0.1); at inference the module
can simply be dropped.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .routing import Routing
from .transformer import RMSNorm


class MTPModule(nn.Module):
    """block_factory builds the module's block, called as ``block(x, token_ids) -> (x, routing or None)``: a course
    ``Block`` with an MoE FFN when the model has MoE (course_lib.model), a DeepSeek block in notebook 11."""

    def __init__(self, d_model: int, block_factory: Callable[[], nn.Module]):
        super().__init__()
        self.hidden_norm = RMSNorm(d_model)
        self.embedding_norm = RMSNorm(d_model)
        self.project = nn.Linear(2 * d_model, d_model, bias=False)
        self.block = block_factory()  # built after the projection: the order in which a seed's draws are used

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor, *, embedding: nn.Embedding, final_norm: nn.Module,
                head: nn.Module) -> tuple[torch.Tensor, Routing | None]:
        """MTP's logits for token i+2 at every position i that has one, and its block's routing (None if dense).

        hidden: (batch, seq, d) the main model's last hidden states; targets: (batch, seq) the next tokens.
        Returns logits of shape (batch, seq-1, vocab): row i predicts targets[:, i+1].
        """
        next_embedding = embedding(targets[:, :-1])  # token i+1, (batch, seq-1, d)
        combined = torch.cat([self.hidden_norm(hidden[:, :-1]), self.embedding_norm(next_embedding)], dim=-1)  # (batch, seq-1, 2d)
        x, routing = self.block(self.project(combined), targets[:, :-1])  # (batch, seq-1, d); hash routing sees token i+1
        return head(final_norm(x)), routing  # the shared output head
