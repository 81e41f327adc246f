"""Parameter, FLOP and KV-cache calculator for real MoE configs (Hugging Face ``config.json``), notebook 08.

Conventions: ``total`` counts every weight of the main model, input embedding and output head included, and
leaves out the multi-token-prediction (MTP) module, which is reported separately (DeepSeek's convention:
"685B = 671B main model + 14B MTP"). ``active`` counts the weights one token uses: all attention and dense
weights, the router, the shared experts and top-k routed experts, the embedding row (we count the whole
embedding matrix, as the published active counts do) and the output head.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "data" / "configs"
FAMILIES = ("deepseek_v3", "mixtral", "qwen3_moe")  # deepseek_v4: see moe_params; its attention is not derivable


@dataclass
class ParamCount:
    total: int
    active: int
    breakdown: dict[str, int]  # sums to total
    mtp: int = 0  # the MTP module(s), outside ``total``
    notes: list[str] = field(default_factory=list)


def load_config(name: str) -> dict:
    """A shipped config by file stem, e.g. ``load_config("deepseek-ai--DeepSeek-V3")``."""
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no config {path.name}; shipped: {sorted(p.stem for p in CONFIG_DIR.glob('*.json'))}")
    return json.loads(path.read_text())


def _field(config: dict, name: str):
    if name not in config:
        raise ValueError(f"config of model_type {config.get('model_type')!r} lacks the field {name!r}, "
                         f"which the parameter count needs")
    return config[name]


def _family(config: dict) -> str:
    model_type = config.get("model_type")
    if model_type == "deepseek_v4":
        raise ValueError("model_type 'deepseek_v4': its attention (compressed sparse attention, hyper-connections, "
                         "grouped output projections, the indexer) cannot be counted from config.json fields alone; "
                         "use moe_params(config) for the parts that can (experts, routers, embeddings)")
    if model_type not in FAMILIES:
        raise ValueError(f"unknown model_type {model_type!r}; supported: {', '.join(FAMILIES)} (and deepseek_v4 via moe_params)")
    return model_type


def attention_params(config: dict) -> int:
    """Weights of one attention block, norms inside it included (MLA for deepseek_v3, GQA otherwise)."""
    hidden, heads = _field(config, "hidden_size"), _field(config, "num_attention_heads")
    if _family(config) == "deepseek_v3":
        q_rank, kv_rank = _field(config, "q_lora_rank"), _field(config, "kv_lora_rank")
        nope, rope, v = _field(config, "qk_nope_head_dim"), _field(config, "qk_rope_head_dim"), _field(config, "v_head_dim")
        queries = (hidden * heads * (nope + rope) if q_rank is None  # q_lora_rank null: one plain projection
                   else hidden * q_rank + q_rank + q_rank * heads * (nope + rope))  # low-rank: down, norm, up
        return (queries
                + hidden * (kv_rank + rope) + kv_rank + kv_rank * heads * (nope + v)  # joint KV latent + shared rope key
                + heads * v * hidden)  # output
    head_dim = config.get("head_dim") or hidden // heads
    kv_heads = _field(config, "num_key_value_heads")
    qk_norms = 2 * head_dim if config["model_type"] == "qwen3_moe" else 0
    return hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + heads * head_dim * hidden + qk_norms


def moe_params(config: dict) -> dict[str, int]:
    """Expert, shared-expert, router and embedding weights: the parts every MoE family states in its config."""
    hidden, layers = _field(config, "hidden_size"), _field(config, "num_hidden_layers")
    model_type = config.get("model_type")
    if model_type == "mixtral":
        n_routed, expert_hidden, n_shared, moe_layers = config["num_local_experts"], config["intermediate_size"], 0, layers
    elif model_type == "qwen3_moe":
        n_routed, expert_hidden, n_shared, moe_layers = _field(config, "num_experts"), _field(config, "moe_intermediate_size"), 0, layers
    elif model_type in ("deepseek_v3", "deepseek_v4"):
        n_routed, expert_hidden = _field(config, "n_routed_experts"), _field(config, "moe_intermediate_size")
        n_shared, moe_layers = _field(config, "n_shared_experts"), layers - config.get("first_k_dense_replace", 0)
    else:
        raise ValueError(f"unknown model_type {model_type!r}; supported: {', '.join(FAMILIES + ('deepseek_v4',))}")
    expert = 3 * hidden * expert_hidden
    router = n_routed * hidden + (n_routed if model_type in ("deepseek_v3", "deepseek_v4") else 0)  # + balance bias
    embeddings = _field(config, "vocab_size") * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return {"routed experts": moe_layers * n_routed * expert, "shared experts": moe_layers * n_shared * expert,
            "routers": moe_layers * router, "embeddings and output head": embeddings,
            "active routed experts": moe_layers * _field(config, "num_experts_per_tok") * expert, "moe layers": moe_layers}


def count_params(config: dict) -> ParamCount:
    """Total and active parameters with a per-component breakdown (see the module docstring for conventions)."""
    _family(config)
    hidden, layers = _field(config, "hidden_size"), _field(config, "num_hidden_layers")
    moe = moe_params(config)
    dense_layers = layers - moe["moe layers"]
    norms = layers * 2 * hidden + hidden  # two per block and the final one
    breakdown = {
        "embeddings and output head": moe["embeddings and output head"],
        "attention": layers * attention_params(config),
        "dense FFN layers": dense_layers * 3 * hidden * config.get("intermediate_size", 0),
        "routed experts": moe["routed experts"],
        "shared experts": moe["shared experts"],
        "routers": moe["routers"],
        "norms": norms,
    }
    total = sum(breakdown.values())
    active = total - moe["routed experts"] + moe["active routed experts"]
    mtp = 0
    notes = []
    if config["model_type"] == "deepseek_v3":
        bias = moe["moe layers"] * config["n_routed_experts"]
        notes.append(f"the count includes the routers' balance biases ({bias:,} values, e_score_correction_bias), which "
                     f"transformers registers as buffers, not parameters: its parameter count is {total - bias:,}")
    if config.get("num_nextn_predict_layers"):
        # V3's MTP module: two norms, a 2d -> d projection, one full MoE block; embedding and head shared
        block = attention_params(config) + 2 * hidden + 3 * hidden * config["moe_intermediate_size"] * (
            config["n_routed_experts"] + config["n_shared_experts"]) + config["n_routed_experts"] * (hidden + 1)
        mtp = config["num_nextn_predict_layers"] * (block + 2 * hidden + 2 * hidden * hidden + hidden)
        notes.append("the released checkpoint also stores its own copy of the embedding and output head in the MTP "
                     f"layer ({moe['embeddings and output head'] / 1e9:.2f}B), which DeepSeek's 14B MTP figure includes")
    return ParamCount(total, active, breakdown, mtp, notes)


def kv_cache_bytes_per_token(config: dict, *, bytes_per_value: int = 2, attention: str = "native") -> int:
    """KV-cache bytes one token adds, over all layers.

    attention: "native" (MLA for deepseek_v3: the latent plus the shared rope key; GQA otherwise), or "mha" for
    the same model with plain multi-head attention (every head stores its own keys and values).
    """
    family, layers = _family(config), _field(config, "num_hidden_layers")
    heads, hidden = _field(config, "num_attention_heads"), _field(config, "hidden_size")
    if family == "deepseek_v3":
        if attention == "native":
            per_layer = config["kv_lora_rank"] + config["qk_rope_head_dim"]
        else:
            per_layer = heads * (config["qk_nope_head_dim"] + config["qk_rope_head_dim"] + config["v_head_dim"])
    else:
        head_dim = config.get("head_dim") or hidden // heads
        kv_heads = config["num_key_value_heads"] if attention == "native" else heads
        per_layer = 2 * kv_heads * head_dim
    return layers * per_layer * bytes_per_value


def flops_per_token(config: dict, *, context: int = 4096) -> int:
    """Forward FLOPs per token: 2 per active weight (the embedding lookup is free) plus attention over ``context``."""
    count = count_params(config)
    vocab, hidden = config["vocab_size"], config["hidden_size"]
    weights = count.active - vocab * hidden  # the input embedding is a lookup; the output head is a matmul
    heads, layers = config["num_attention_heads"], config["num_hidden_layers"]
    if config["model_type"] == "deepseek_v3":
        score_dims = config["qk_nope_head_dim"] + config["qk_rope_head_dim"] + config["v_head_dim"]
    else:
        score_dims = 2 * (config.get("head_dim") or hidden // heads)
    return 2 * weights + 2 * layers * heads * score_dims * context
