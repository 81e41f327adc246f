"""Checks for notebook 01's exercises."""
from __future__ import annotations

import math

import torch

from . import NOT_DONE, Feedback, graduated, not_done

def check_causal_mask(causal_mask) -> Feedback:
    """Exercise 01.1: ``causal_mask(seq)`` returns a (seq, seq) bool tensor, True where attention is forbidden."""
    if not_done(causal_mask):
        return NOT_DONE
    mask = causal_mask(5)
    expected = torch.ones(5, 5, dtype=torch.bool).triu(1)
    if not isinstance(mask, torch.Tensor) or mask.shape != (5, 5):
        return Feedback(False, "causal_mask(5) should return a 5x5 tensor. Start from torch.ones(seq, seq).")
    if mask.dtype != torch.bool:
        return Feedback(False, f"the mask has dtype {mask.dtype}; make it bool (True = forbidden), e.g. with .bool().")
    if torch.equal(mask, expected):
        return Feedback(True, "position i may attend to positions 0..i and never to the future. "
                              "Next: compare it with the mask inside CausalSelfAttention.attention_weights.")
    if torch.equal(mask, torch.ones(5, 5, dtype=torch.bool).triu(0)):
        return Feedback(False, "you also masked the diagonal: a position must be allowed to attend to itself "
                               "(the first token has nothing else). Use triu with diagonal=1.")
    if torch.equal(mask, ~expected):
        return Feedback(False, "the mask is inverted: True must mark the forbidden (future) positions.")
    if torch.equal(mask, expected.T) or torch.equal(mask, torch.ones(5, 5, dtype=torch.bool).tril(-1)):
        return Feedback(False, "you masked the past instead of the future: rows are queries, columns are keys; "
                               "forbid column j > row i (upper triangle).")
    return graduated("01.1", causal_mask, nudge="not a causal mask yet: which keys may query i look at, and which not?",
                     method="row i must be False for columns 0..i and True after them: which triangle of a square matrix is "
                            "that, and does it include the diagonal?")


def check_parameter_count(answer, config) -> Feedback:
    """Exercise 01.2: predict the parameter count of ``config`` by hand before building it."""
    if not_done(answer):
        return NOT_DONE
    from ..transformer import dense_parameter_formula

    parts = dense_parameter_formula(config)
    truth = sum(parts.values())
    d = config.d_model
    if answer == truth:
        return Feedback(True, f"{truth:,} parameters. Next: which component dominates? Compare with plot_shares.")
    if answer == truth + config.vocab_size * d:
        return Feedback(False, "you counted the output head separately, but it is tied to the token embedding "
                               "(one matrix used twice).")
    if answer == truth - config.context_length * d:
        return Feedback(False, "you forgot the position embeddings (context_length x d_model).")
    if answer == truth - parts["norms"]:
        return Feedback(False, "close: add the RMSNorm gains (two per block plus the final one, d_model each).")
    if answer == truth - config.n_layers * d * config.ffn_hidden:
        return Feedback(False, "SwiGLU has three matrices (gate, up, down), not two.")
    return graduated("01.2", answer, nudge="not the right count: list every weight matrix and vector the model has, block by "
                                   "block, and outside the blocks.",
                     method="per block: attention 4·d², FFN 3·d·hidden, two norms of d; plus embeddings (tokens and "
                            "positions) and a final norm.")


def check_unigram_loss(answer, corpus) -> Feedback:
    """Exercise 01.3: compute the unigram baseline (nats per byte) yourself from byte counts."""
    if not_done(answer):
        return NOT_DONE
    truth = corpus.unigram_loss()
    answer = float(answer)
    if math.isclose(answer, truth, rel_tol=2e-3):
        return Feedback(True, f"{truth:.3f} nats per byte: any model that beats this has learned to use context. "
                              "Next: what loss would a bigram model (previous byte as context) reach?")
    if math.isclose(answer, truth / math.log(2), rel_tol=2e-3):
        return Feedback(False, "that is in bits (log base 2). PyTorch's cross-entropy uses natural logs: use torch.log.")
    if answer < 0:
        return Feedback(False, "a cross-entropy is never negative: the loss is minus the mean log-probability.")
    if math.isclose(answer, math.log(256), rel_tol=1e-3):
        return Feedback(False, "log(256) is the uniform model's loss; weight each byte by its frequency in train.")
    return graduated("01.3", answer, nudge="not yet: a unigram model gives each byte its frequency in the training text, "
                                   "whatever came before.",
                     method="count bytes on the training split, turn counts into probabilities, then average -log p "
                            "over the validation bytes.")
