"""What do experts specialise in? Usage of each expert by domain and by token class (notebook 05).

Token classes are properties of the byte being routed: digit, whitespace, punctuation, letter, or a byte inside a
Python keyword (``def``, ``return``...). A keyword occurrence is found in the raw text, so every byte of it counts.
"""
from __future__ import annotations

import contextlib
import keyword
import re

import torch
import torch.nn as nn

from .balancing import routing_entropy
from .data import Corpus
from .hardware import model_device

TOKEN_CLASSES = ("digit", "whitespace", "punctuation", "letter", "python keyword")
_KEYWORD = re.compile(rb"\b(" + b"|".join(k.encode() for k in keyword.kwlist if k.isalpha()) + rb")\b")


def token_classes(tokens: torch.Tensor) -> torch.Tensor:
    """(n,) byte ids -> (n,) index into TOKEN_CLASSES (-1 for bytes in none of them, e.g. non-ASCII)."""
    data = bytes(tokens.tolist())
    classes = torch.full((len(data),), -1, dtype=torch.long)
    for i, byte in enumerate(data):
        char = chr(byte)
        if char.isdigit():
            classes[i] = 0
        elif char.isspace():
            classes[i] = 1
        elif byte < 128 and not char.isalnum():
            classes[i] = 2
        elif byte < 128 and char.isalpha():
            classes[i] = 3
    for match in _KEYWORD.finditer(data):
        classes[match.start():match.end()] = 4
    return classes


@torch.no_grad()
def expert_usage(model: nn.Module, corpus: Corpus, *, batches: int = 6, batch_size: int = 16,
                 seq_len: int = 64) -> dict[str, torch.Tensor]:
    """Share of each expert's assignments, per layer, for each domain and each token class.

    Returns {"domain": (layers, domains, experts), "class": (layers, classes, experts), "entropy": (layers, domains)};
    each row of the first two sums to 1; entropy is the mean per-token routing entropy (nats).
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    layers = [model.blocks[i].ffn for i in model.moe_blocks()]  # MTP's layer needs targets: not here
    n_experts = layers[0].n_experts
    by_domain = torch.zeros(len(layers), len(corpus.domains), n_experts)
    by_class = torch.zeros(len(layers), len(TOKEN_CLASSES), n_experts)
    entropy = torch.zeros(len(layers), len(corpus.domains))
    for domain_id, domain in enumerate(corpus.domains):
        generator = torch.Generator().manual_seed(domain_id)
        for _ in range(batches):
            batch = corpus.get_batch("val", batch_size=batch_size, seq_len=seq_len, generator=generator, domain=domain)
            output = model(batch.inputs.to(device), return_aux=True)
            classes = token_classes(batch.inputs.flatten())
            for layer_id, routing in enumerate(output.routing):
                routing = routing.to("cpu")
                kept = routing.kept_mask()
                one_hot = torch.zeros(routing.indices.shape[0], n_experts).scatter_add_(
                    1, routing.indices, kept.float())  # (tokens, experts) assignments
                by_domain[layer_id, domain_id] += one_hot.sum(0)
                by_class[layer_id].index_add_(0, classes.clamp_min(0), one_hot * (classes >= 0).unsqueeze(1))
                entropy[layer_id, domain_id] += routing_entropy(routing.scores) / batches
    model.train(was_training)
    return {"domain": by_domain / by_domain.sum(-1, keepdim=True),
            "class": by_class / by_class.sum(-1, keepdim=True).clamp_min(1), "entropy": entropy}


@contextlib.contextmanager
def shared_experts_disabled(model: nn.Module):
    """Temporarily make every MoE layer's shared experts output zero (an ablation)."""
    saved = [(layer, layer.shared) for layer in model.moe_layers() if layer.shared is not None]
    if not saved:
        raise ValueError("this model has no shared experts to disable (MoE built with n_shared=0)")
    try:
        for layer, _ in saved:
            layer.shared = None
        yield model
    finally:
        for layer, shared in saved:
            layer.shared = shared


@contextlib.contextmanager
def expert_disabled(model: nn.Module, expert: int):
    """Temporarily forbid routed expert ``expert`` in every MoE layer (its bias set to -inf for selection)."""
    layers = model.moe_layers()
    saved = [layer.router.bias.clone() for layer in layers]
    try:
        for layer in layers:
            layer.router.bias[expert] = float("-inf")
        yield model
    finally:
        for layer, bias in zip(layers, saved):
            layer.router.bias.copy_(bias)
