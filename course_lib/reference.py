"""transformers as the oracle: tiny DeepSeek-V3 and V4 checkpoints written by an implementation nobody here wrote.

The course's mini DeepSeek models (``course_lib.deepseek``) are checked against transformers' ``DeepseekV3ForCausalLM``
and ``DeepseekV4ForCausalLM``: transformers builds a tiny model from ``TINY_CONFIGS``, its weights are randomised
(initialisations that leave sinks, biases or position terms at zero would hide mistakes), it writes a real-format
checkpoint with ``save_pretrained``, ``course_lib.hf_format.load_pretrained`` reads it, and ``compare`` runs both on
the same tokens. Notebook 11 shows it live; tests/test_deepseek_reference.py asserts it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .hardware import model_device

TINY_CONFIGS = {
    # MLA with query compression, one dense block, group-limited sigmoid routing with balance biases
    "deepseek_v3": dict(vocab_size=64, hidden_size=32, intermediate_size=48, moe_intermediate_size=16,
                        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
                        n_routed_experts=8, num_experts_per_tok=2, n_group=2, topk_group=1, first_k_dense_replace=1,
                        q_lora_rank=16, kv_lora_rank=12, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
                        max_position_embeddings=64, routed_scaling_factor=2.5),
    # every V4 attention type, a hash-routed first layer, an indexer that must choose (3 of up to 10 entries
    # at 40 tokens), and a SwiGLU limit low enough that the clamps act on random weights
    "deepseek_v4": dict(vocab_size=64, hidden_size=32, moe_intermediate_size=16, num_hidden_layers=4,
                        num_attention_heads=4, head_dim=16, q_lora_rank=16, n_routed_experts=8, num_experts_per_tok=2,
                        sliding_window=8, o_groups=2, o_lora_rank=8, index_n_heads=2, index_head_dim=8, index_topk=3,
                        compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 8},
                        partial_rotary_factor=0.25, swiglu_limit=0.5, routed_scaling_factor=1.5,
                        layer_types=["sliding_attention", "compressed_sparse_attention",
                                     "heavily_compressed_attention", "compressed_sparse_attention"],
                        mlp_layer_types=["hash_moe", "moe", "moe", "moe"]),
}


def reference_model(model_type: str, *, seed: int = 0, **overrides) -> nn.Module:
    """transformers' model of ``model_type`` ("deepseek_v3" or "deepseek_v4") with random weights, in eval mode."""
    import transformers  # a dependency of notebook 11 and the tests only

    if model_type not in TINY_CONFIGS:
        raise ValueError(f"model_type must be one of {tuple(TINY_CONFIGS)}, got {model_type!r}")
    config = transformers.AutoConfig.for_model(model_type, **{**TINY_CONFIGS[model_type], **overrides})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():  # std 0.2 for matrices, 0.3 for gains, sinks and biases
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * (0.2 if parameter.dim() > 1 else 0.3))
        for name, buffer in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
            elif name.endswith("tid2eid"):  # hash routing: each token id gets k distinct experts
                n_experts = config.n_routed_experts
                buffer.copy_(torch.stack([torch.randperm(n_experts, generator=generator)[:buffer.shape[1]]
                                          for _ in range(buffer.shape[0])]))
    return model


def write_reference_checkpoint(folder: str | Path, model_type: str, *, seed: int = 0, **overrides) -> nn.Module:
    """Write a random tiny transformers model to ``folder`` (config.json + model.safetensors) and return it."""
    model = reference_model(model_type, seed=seed, **overrides)
    model.save_pretrained(folder)
    return model


@dataclass
class Comparison:
    max_abs_difference: float  # max |logits_course - logits_transformers|
    max_abs_logit: float  # the scale of the logits, for context
    expert_choices_equal: bool  # every token's set of experts identical in every MoE layer
    moe_layers: int


@torch.no_grad()
def compare(course_model: nn.Module, reference: nn.Module, input_ids: torch.Tensor) -> Comparison:
    """Run both models on ``input_ids`` (batch, seq) and compare their logits and every token's expert choice."""
    chosen = []
    hooks = [module.register_forward_hook(lambda _m, _a, out: chosen.append(out[2].sort(-1).values))
             for name, module in reference.named_modules() if name.endswith("mlp.gate")]
    try:
        theirs = reference(input_ids.to(model_device(reference))).logits
    finally:
        for hook in hooks:
            hook.remove()
    output = course_model(input_ids.to(model_device(course_model)), return_aux=True)
    ours = [routing.indices.sort(-1).values.cpu() for routing in output.routing]
    same = len(ours) == len(chosen) and all(torch.equal(a, b.cpu()) for a, b in zip(ours, chosen))
    return Comparison((output.logits.cpu() - theirs.cpu()).abs().max().item(), theirs.abs().max().item(), same, len(ours))
