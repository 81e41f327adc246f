"""Load a DeepSeek-V3 or V4 checkpoint in the Hugging Face format into the course's own model (notebook 11).

Open weights travel as a folder: ``config.json`` (the architecture) and ``model.safetensors``, or several shards
listed in ``model.safetensors.index.json``. ``load_pretrained(folder)`` reads the config into a
``DeepSeekConfig``, builds ``course_lib.deepseek.DeepSeekModel`` and fills it tensor by tensor: each checkpoint
name is mapped onto a course module (V3 checkpoints use transformers' names, V4 checkpoints DeepSeek's own:
``wq_a``, ``wkv``, ``attn_sink``, ``hc_attn_fn`` ...), per-expert matrices are stacked the way the course's MoE
stores them, and every shape is checked. Anything that does not fit is an error that names the tensor or the
field and says what to do; nothing is guessed. The multi-token-prediction layers a release may carry are skipped,
as transformers skips them. The course model runs in float32 on the course's device.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .config import DeepSeekConfig, MoEConfig
from .deepseek import DeepSeekModel
from .hardware import pick_device
from .moe import MoE
from .routing import RouterConfig

SUPPORTED_TYPES = ("deepseek_v3", "deepseek_v4")
V4_ATTENTION = {"sliding_attention": "sliding", "compressed_sparse_attention": "csa",
                "heavily_compressed_attention": "hca"}
V4_COMPRESS_RATIO = {0: "sliding_attention", 4: "compressed_sparse_attention", 128: "heavily_compressed_attention"}


class CheckpointError(ValueError):
    """A checkpoint folder whose config or tensors do not fit the course's DeepSeek models."""


# ---- config.json -> DeepSeekConfig ---------------------------------------------------------------------------

def _get(hf: dict, name: str):
    if hf.get(name) is None:
        raise CheckpointError(f"config.json of model_type {hf.get('model_type')!r} lacks the field {name!r}; "
                              f"add it (see the model's published config.json)")
    return hf[name]


def _rope(hf: dict, kind: str) -> float:
    """RoPE base of the "main" or (V4) "compress" layers. Only plain RoPE is implemented: YaRN is refused."""
    params = hf.get("rope_parameters") or {}
    nested = isinstance(params.get("main"), dict)  # V4 as transformers writes it: {"main": {...}, "compress": {...}}
    params = params.get(kind, {}) if nested else params
    for source in (params, hf.get("rope_scaling") or {}):
        rope_type = source.get("rope_type", source.get("type", "default"))
        if rope_type != "default":
            raise CheckpointError(f"config.json asks for {rope_type!r} RoPE scaling, which the course's models do not "
                                  f"implement (plain RoPE only); for a small model trained without it, set "
                                  f"rope_scaling to null")
    if kind == "compress":
        return float(params.get("rope_theta", hf.get("compress_rope_theta", 160000.0)) if nested
                     else hf.get("compress_rope_theta", 160000.0))
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def config_from_hf(hf: dict) -> DeepSeekConfig:
    """The course config of a Hugging Face ``config.json`` dict (deepseek_v3 or deepseek_v4)."""
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_TYPES:
        raise CheckpointError(f"model_type {model_type!r} is not supported; load_pretrained reads "
                              f"{', '.join(SUPPORTED_TYPES)} checkpoints")
    if hf.get("quantization_config"):
        raise CheckpointError("config.json has a quantization_config (FP8/FP4 weights with scales): dequantize the "
                              "checkpoint to bf16 or fp32 first; the course's models hold plain float weights")
    if hf.get("tie_word_embeddings"):
        raise CheckpointError("tie_word_embeddings is true, but DeepSeek's embedding and output head are separate "
                              "matrices; set it to false")
    common = dict(vocab_size=_get(hf, "vocab_size"), d_model=_get(hf, "hidden_size"),
                  n_layers=_get(hf, "num_hidden_layers"), n_heads=_get(hf, "num_attention_heads"),
                  rms_eps=float(hf.get("rms_norm_eps", 1e-6)), rope_theta=_rope(hf, "main"))
    return (_v3_config if model_type == "deepseek_v3" else _v4_config)(hf, common)


def _v3_config(hf: dict, common: dict) -> DeepSeekConfig:
    if hf.get("scoring_func", "sigmoid") != "sigmoid":
        raise CheckpointError(f"deepseek_v3 routes with a sigmoid gate, config.json says scoring_func="
                              f"{hf['scoring_func']!r}; fix the config or the model_type")
    if not hf.get("rope_interleave", True):
        raise CheckpointError("rope_interleave is false: the course rotates DeepSeek's interleaved channel pairs only")
    router = RouterConfig(score="sigmoid", normalize=bool(hf.get("norm_topk_prob", True)),
                          routed_scaling=float(_get(hf, "routed_scaling_factor")),
                          n_group=_get(hf, "n_group"), topk_group=_get(hf, "topk_group"))
    moe = MoEConfig(n_experts=_get(hf, "n_routed_experts"), top_k=_get(hf, "num_experts_per_tok"),
                    expert_hidden=_get(hf, "moe_intermediate_size"), n_shared=hf.get("n_shared_experts") or 0,
                    router=router, first_dense_layers=hf.get("first_k_dense_replace", 0))
    return DeepSeekConfig(**common, attention=("mla",) * common["n_layers"], moe=moe,
                          dense_hidden=hf.get("intermediate_size") or 0, q_lora_rank=hf.get("q_lora_rank"),
                          kv_lora_rank=_get(hf, "kv_lora_rank"), qk_nope_dim=_get(hf, "qk_nope_head_dim"),
                          rope_dim=_get(hf, "qk_rope_head_dim"), v_head_dim=_get(hf, "v_head_dim"))


def _v4_config(hf: dict, common: dict) -> DeepSeekConfig:
    n_layers = common["n_layers"]
    layer_types = hf.get("layer_types") or [V4_COMPRESS_RATIO.get(r, r) for r in _get(hf, "compress_ratios")]
    unknown = [t for t in layer_types if t not in V4_ATTENTION]
    if len(layer_types) < n_layers or unknown:
        raise CheckpointError(f"layer_types needs one of {tuple(V4_ATTENTION)} per layer ({n_layers}), got "
                              f"{layer_types}")
    mlp_types = hf.get("mlp_layer_types") or (["hash_moe"] * hf.get("num_hash_layers", 3) + ["moe"] * n_layers)
    hash_layers = next((i for i, t in enumerate(mlp_types[:n_layers]) if t != "hash_moe"), n_layers)
    if any(t != "moe" for t in mlp_types[hash_layers:n_layers]):
        raise CheckpointError(f"mlp_layer_types must be some 'hash_moe' layers first, then 'moe', got {mlp_types}")
    if hf.get("n_shared_experts", 1) != 1:
        raise CheckpointError(f"DeepSeek-V4 has exactly one shared expert, config.json says n_shared_experts="
                              f"{hf['n_shared_experts']}")
    rates = {**{"compressed_sparse_attention": hf.get("compress_rate_csa", 4),
                "heavily_compressed_attention": hf.get("compress_rate_hca", 128)}, **(hf.get("compress_rates") or {})}
    head_dim = _get(hf, "head_dim")
    rope_dim = hf.get("qk_rope_head_dim") or int(head_dim * hf.get("partial_rotary_factor", 64 / 512))
    score = {"sqrtsoftplus": "sqrt_softplus", "sigmoid": "sigmoid", "softmax": "softmax"}.get(
        hf.get("scoring_func", "sqrtsoftplus"))
    if score is None:
        raise CheckpointError(f"unknown scoring_func {hf.get('scoring_func')!r}; DeepSeek-V4 uses 'sqrtsoftplus'")
    router = RouterConfig(score=score, normalize=True, routed_scaling=float(_get(hf, "routed_scaling_factor")))
    moe = MoEConfig(n_experts=_get(hf, "n_routed_experts"), top_k=_get(hf, "num_experts_per_tok"),
                    expert_hidden=_get(hf, "moe_intermediate_size"), n_shared=1, router=router,
                    hash_layers=hash_layers, swiglu_limit=float(_get(hf, "swiglu_limit")))
    return DeepSeekConfig(**common, attention=tuple(V4_ATTENTION[t] for t in layer_types[:n_layers]), moe=moe,
                          rope_dim=rope_dim, q_lora_rank=_get(hf, "q_lora_rank"), head_dim=head_dim,
                          sliding_window=_get(hf, "sliding_window"), csa_rate=rates["compressed_sparse_attention"],
                          hca_rate=rates["heavily_compressed_attention"], index_heads=hf.get("index_n_heads", 0),
                          index_head_dim=hf.get("index_head_dim", 0), index_topk=hf.get("index_topk", 0),
                          o_groups=_get(hf, "o_groups"), o_lora_rank=_get(hf, "o_lora_rank"),
                          compress_rope_theta=_rope(hf, "compress"), hc_streams=hf.get("hc_mult", 4),
                          sinkhorn_iters=hf.get("hc_sinkhorn_iters", 20), hc_eps=float(hf.get("hc_eps", 1e-6)))


# ---- checkpoint names -> course names --------------------------------------------------------------------------
# Names without their "model." prefix: the model-wide ones, then those after "layers.<i>.", which go under
# "blocks.<i>.". SwiGLU pieces (gate, up and down of experts, shared experts and dense FFNs) are gathered apart,
# because the course fuses gate and up into one matrix and stacks the experts.
V3_NAMES = {"embed_tokens.weight": "token_embedding.weight", "lm_head.weight": "head.weight",
            "norm.weight": "final_norm.weight"}
V3_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    **{f"self_attn.{theirs}.weight": f"attn.{ours}.weight" for theirs, ours in [
        ("q_proj", "q_proj"), ("q_a_proj", "q_down"), ("q_a_layernorm", "q_norm"), ("q_b_proj", "q_up"),
        ("kv_a_proj_with_mqa", "kv_down"), ("kv_a_layernorm", "kv_norm"), ("kv_b_proj", "kv_up"), ("o_proj", "out")]},
    "mlp.gate.weight": "ffn.router.gate.weight", "mlp.gate.e_score_correction_bias": "ffn.router.bias",
}
V3_SWIGLU = r"layers\.(\d+)\.mlp\.(?:(experts)\.(\d+)\.|(shared_experts)\.)?(gate_proj|up_proj|down_proj)\.weight"
V4_NAMES = {"embed.weight": "token_embedding.weight", "embed_tokens.weight": "token_embedding.weight",
            "head.weight": "head.weight", "lm_head.weight": "head.weight", "norm.weight": "final_norm.weight",
            **{f"hc_head{sep}{part}": f"hc_head.{part}" for sep in ("_", ".hc_") for part in ("fn", "base", "scale")}}
V4_COMPRESSOR = {"wkv.weight": "kv_proj.weight", "wgate.weight": "gate_proj.weight", "ape": "position_bias",
                 "norm.weight": "norm.weight"}
V4_LAYER_NAMES = {
    "attn_norm.weight": "attn_norm.weight", "ffn_norm.weight": "ffn_norm.weight",
    **{f"hc_{where}_{part}": f"{where}_hc.{part}" for where in ("attn", "ffn") for part in ("fn", "base", "scale")},
    **{f"attn.{theirs}": f"attn.{ours}" for theirs, ours in [
        ("wq_a.weight", "q_down.weight"), ("q_norm.weight", "q_norm.weight"), ("wq_b.weight", "q_up.weight"),
        ("wkv.weight", "kv_proj.weight"), ("norm.weight", "kv_norm.weight"), ("wo_a.weight", "group_proj.weight"),
        ("wo_b.weight", "out.weight"), ("attn_sink", "sinks"), ("indexer.wq_b.weight", "indexer.q_up.weight"),
        ("indexer.weights_proj.weight", "indexer.head_weights.weight")]},
    **{f"attn.{owner}compressor.{theirs}": f"attn.{owner}compressor.{ours}"
       for owner in ("", "indexer.") for theirs, ours in V4_COMPRESSOR.items()},
    "ffn.gate.weight": "ffn.router.gate.weight", "ffn.gate.bias": "ffn.router.bias",
    "ffn.gate.tid2eid": "ffn.router.token_to_experts",
}
V4_SWIGLU = r"layers\.(\d+)\.ffn\.(?:(experts)\.(\d+)\.|(shared_experts)\.)(w1|w3|w2)\.weight"
ROLE = {"gate_proj": "gate", "up_proj": "up", "down_proj": "down", "w1": "gate", "w3": "up", "w2": "down"}


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint in ``folder``: one model.safetensors, or the shards its index lists."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map") or {}
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            tensors = sorted(name for name, shard in weight_map.items() if shard == missing[0])
            raise CheckpointError(f"shard {missing[0]} listed in {index.name} is missing from {folder} (it holds "
                                  f"{len(tensors)} tensors, e.g. {tensors[0]}); download it again")
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        raise CheckpointError(f"{folder} has no model.safetensors or model.safetensors.index.json"
                              + (f" (only pickle files {pickles}, which the course does not unpickle: convert them "
                                 f"to safetensors)" if pickles else ""))
    tensors = {}
    for shard in shards:
        try:
            tensors.update(load_file(folder / shard))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{shard} is not a readable safetensors file ({error}); download it again") from None
    return tensors


def course_tensors(tensors: dict[str, torch.Tensor], config: DeepSeekConfig, *,
                   mtp_layers: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The checkpoint's tensors under the course model's state_dict names (experts stacked, gate and up fused),
    and the checkpoint name each came from. The ``mtp_layers`` layers after the last (num_nextn_predict_layers)
    and ``mtp.*`` are skipped; any other unknown name is an error."""
    names, layer_names, swiglu_pattern = ((V4_NAMES, V4_LAYER_NAMES, V4_SWIGLU) if config.is_v4
                                          else (V3_NAMES, V3_LAYER_NAMES, V3_SWIGLU))
    renamed: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    pieces: dict[str, dict] = defaultdict(dict)  # course FFN prefix -> {(expert or None, role): (name, tensor)}
    for name, tensor in tensors.items():
        short = name.removeprefix("model.")
        in_layer = re.fullmatch(r"layers\.(\d+)\.(.+)", short)
        layer = int(in_layer.group(1)) if in_layer else -1
        if short.startswith("mtp.") or config.n_layers <= layer < config.n_layers + mtp_layers:
            continue  # the multi-token-prediction module: not part of the model that predicts the next token
        if layer >= config.n_layers:
            raise CheckpointError(f"tensor {name!r} belongs to layer {layer}, but config.json says num_hidden_layers="
                                  f"{config.n_layers} (and num_nextn_predict_layers={mtp_layers}); fix the config")
        if match := re.fullmatch(swiglu_pattern, short):
            block, experts, expert, shared, role = match.groups()
            prefix = f"blocks.{block}.ffn" + (".shared" if shared else "")
            _check_piece(name, tensor, ROLE[role], config, "routed" if experts else "shared" if shared else "dense")
            pieces[prefix][(int(expert) if experts else None, ROLE[role])] = (name, tensor)
        elif in_layer and in_layer.group(2) in layer_names:
            target = f"blocks.{in_layer.group(1)}.{layer_names[in_layer.group(2)]}"
            renamed[target], sources[target] = tensor, name
        elif short in names:
            renamed[names[short]], sources[names[short]] = tensor, name
        else:
            raise CheckpointError(f"tensor {name!r} has no place in a {'V4' if config.is_v4 else 'V3'} model; is "
                                  f"config.json's model_type right for these weights?")
    for prefix, parts in pieces.items():
        experts = sorted({e for e, _ in parts if e is not None})
        if not experts:  # a dense FFN or the shared experts: one SwiGLU
            fused = {f"{prefix}.gate_up.weight": torch.cat([_piece(parts, prefix, None, "gate"),
                                                            _piece(parts, prefix, None, "up")]),
                     f"{prefix}.down.weight": _piece(parts, prefix, None, "down")}
        else:
            n = config.moe.n_experts if config.moe else 0
            if experts[-1] >= n:
                raise CheckpointError(f"{prefix}: the checkpoint has expert {experts[-1]}, but config.json says "
                                      f"n_routed_experts={n}")
            fused = {f"{prefix}.w_gate_up": torch.stack([torch.cat([_piece(parts, prefix, e, "gate"),
                                                                    _piece(parts, prefix, e, "up")]) for e in range(n)]),
                     f"{prefix}.w_down": torch.stack([_piece(parts, prefix, e, "down") for e in range(n)])}
        renamed.update(fused)
        sources.update(dict.fromkeys(fused, f"the SwiGLU pieces of {prefix}"))
    return renamed, sources


def _check_piece(name: str, tensor: torch.Tensor, role: str, config: DeepSeekConfig, kind: str) -> None:
    """A gate, up or down projection must have the width config.json gives its kind of FFN."""
    moe = config.moe
    width, field = {"routed": (moe and moe.expert_hidden, "moe_intermediate_size"),
                    "shared": (moe and moe.n_shared * moe.expert_hidden, "moe_intermediate_size x n_shared_experts"),
                    "dense": (config.dense_hidden, "intermediate_size")}[kind]
    expected = (config.d_model, width) if role == "down" else (width, config.d_model)
    if tuple(tensor.shape) != expected:
        raise CheckpointError(f"checkpoint tensor {name!r} has shape {tuple(tensor.shape)}, but config.json implies "
                              f"{expected} (hidden_size, {field}); config and weights belong to different models")


def _checkpoint_name(course_name: str, config: DeepSeekConfig) -> str:
    """The checkpoint name a course tensor is read from (without the "model." prefix), for error messages."""
    names, layer_names = (V4_NAMES, V4_LAYER_NAMES) if config.is_v4 else (V3_NAMES, V3_LAYER_NAMES)
    in_block = re.fullmatch(r"blocks\.(\d+)\.(.+)", course_name)
    table = {ours: f"layers.{in_block.group(1)}.{theirs}" for theirs, ours in layer_names.items()} if in_block else {
        ours: theirs for theirs, ours in names.items()}
    return table.get(in_block.group(2) if in_block else course_name, course_name)


def _piece(parts: dict, prefix: str, expert: int | None, role: str) -> torch.Tensor:
    if (expert, role) not in parts:
        what = f"expert {expert}'s" if expert is not None else "the"
        raise CheckpointError(f"{prefix}: {what} {role} projection is missing from the checkpoint")
    return parts[(expert, role)][1]


def load_pretrained(folder: str | Path, *, device: str | torch.device | None = None) -> DeepSeekModel:
    """A course ``DeepSeekModel`` with the weights of the Hugging Face checkpoint in ``folder``, in eval mode.

    ``model(input_ids)`` gives the (batch, seq, vocab) logits. Raises CheckpointError (a ValueError) for a config
    or checkpoint that does not fit, naming the field or tensor.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} has no config.json: a Hugging Face checkpoint folder needs one")
    hf = json.loads(config_path.read_text())
    config = config_from_hf(hf)
    model = DeepSeekModel(config)
    tensors, sources = course_tensors(read_tensors(folder), config, mtp_layers=hf.get("num_nextn_predict_layers") or 0)
    expected = model.state_dict()
    for name, tensor in tensors.items():
        if name not in expected:
            raise CheckpointError(f"checkpoint tensor {sources[name]!r} has no place in the model config.json "
                                  f"describes (no {name!r}); config and weights belong to different models")
        if tensor.shape != expected[name].shape:
            raise CheckpointError(f"checkpoint tensor {sources[name]!r} has shape {tuple(tensor.shape)}, but "
                                  f"config.json implies {tuple(expected[name].shape)} for it ({name}); config "
                                  f"and weights belong to different models")
    # hash-routed layers have no balance bias in the checkpoint: theirs stays zero (hash routing never reads it)
    optional = {f"blocks.{i}.ffn.router.bias" for i, block in enumerate(model.blocks)
                if isinstance(block.ffn, MoE) and block.ffn.router.config.kind == "hash"}
    missing = sorted(set(expected) - set(tensors) - optional)
    if missing:
        raise CheckpointError(f"the checkpoint lacks {len(missing)} tensors the model needs, first "
                              f"{_checkpoint_name(missing[0], config)!r} (the course's {missing[0]}); is it complete, "
                              f"and written for this config.json?")
    for name, table in tensors.items():
        if name.endswith("token_to_experts") and not (0 <= int(table.min()) and int(table.max()) < config.moe.n_experts):
            raise CheckpointError(f"{sources[name]!r} routes to expert {int(table.max())}, but config.json has "
                                  f"n_routed_experts={config.moe.n_experts}")
    state = {name: tensor.to(expected[name].dtype) for name, tensor in tensors.items()}
    model.load_state_dict(state, strict=False)
    return model.to(pick_device(device)).eval()
