"""Parameter, FLOP and KV-cache calculator for real MoE configs (Hugging Face ``config.json``), notebook 08.

Conventions: ``total`` counts every weight of the main model, input embedding and output head included, and
leaves out the multi-token-prediction (MTP) module, which is reported separately (DeepSeek's convention:
"685B = 671B main model + 14B MTP"). ``active`` counts the weights one token uses: everything except the
routed experts it is not sent to, i.e. all attention (for DeepSeek-V4 also its compressors, indexer and
hyper-connections), dense and shared FFNs, routers, top-k routed experts, the embedding (we count the whole
matrix, as Mistral's and Qwen's published active counts do; DeepSeek's published active figures match leaving
the input embedding out) and the output head. Routers' balance biases count as weights; transformers keeps them
as buffers, and ``ParamCount.notes`` says where its count differs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "data" / "configs"
FAMILIES = ("deepseek_v2", "deepseek_v3", "deepseek_v4", "mixtral", "qwen3_moe")
MLA = ("deepseek_v2", "deepseek_v3")  # multi-head latent attention
# DeepSeek-V4's three attention kinds, keyed by the per-layer compression ratio older configs ship
SLIDING, CSA, HCA = "sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention"
V4_RATIO_KINDS = {0: SLIDING, 4: CSA, 128: HCA}


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
    if model_type not in FAMILIES:
        raise ValueError(f"unknown model_type {model_type!r}; supported: {', '.join(FAMILIES)}")
    return model_type


def v4_schedule(config: dict) -> tuple[list[str], list[str], dict[str, int]]:
    """DeepSeek-V4's per-layer attention kinds, per-layer MoE kinds ("hash_moe"/"moe") and compression rates.

    Read as transformers' DeepseekV4Config reads them: explicit ``layer_types`` first, else the legacy per-layer
    ``compress_ratios`` (0 sliding window only, 4 CSA, 128 HCA; the released configs list one entry more than
    there are layers, for the MTP layer), else two HCA layers then HCA/CSA alternating; the first
    ``num_hash_layers`` (default 3) MoE layers route by token-id hash.
    """
    layers = _field(config, "num_hidden_layers")
    rates = {CSA: 4, HCA: 128, **(config.get("compress_rates") or {})}
    rates[CSA], rates[HCA] = config.get("compress_rate_csa", rates[CSA]), config.get("compress_rate_hca", rates[HCA])
    kinds = config.get("layer_types")
    if kinds is None and config.get("compress_ratios") is not None:
        kinds = [V4_RATIO_KINDS[ratio] for ratio in config["compress_ratios"]]
    if kinds is None:
        kinds = [HCA, HCA] + [CSA if i % 2 else HCA for i in range(layers - 2)]
    hashed = 3 if config.get("num_hash_layers") is None else config["num_hash_layers"]
    mlp = config.get("mlp_layer_types") or ["hash_moe"] * hashed + ["moe"] * layers
    return list(kinds[:layers]), list(mlp[:layers]), rates


def _v4_attention(config: dict, kind: str, rates: dict[str, int]) -> tuple[int, int]:
    """(attention, compressor + indexer) weights of one DeepSeek-V4 layer of the given kind, norms included."""
    hidden, heads, head = (_field(config, name) for name in ("hidden_size", "num_attention_heads", "head_dim"))
    q_rank, groups, o_rank = _field(config, "q_lora_rank"), _field(config, "o_groups"), _field(config, "o_lora_rank")
    attention = (hidden * q_rank + q_rank + q_rank * heads * head  # queries: down, norm, up (per-head norm: no weight)
                 + hidden * head + head  # one KV head, read as both key and value, and its norm
                 + heads * head * o_rank + groups * o_rank * hidden  # grouped output: each group -> o_rank, then mixed
                 + heads)  # one attention sink per head
    if kind == SLIDING:
        return attention, 0
    if kind == HCA:  # kv and gate projections, a learned bias per position in the window, a norm
        return attention, 2 * hidden * head + rates[HCA] * head + head
    index_heads, index_dim = _field(config, "index_n_heads"), _field(config, "index_head_dim")
    # CSA windows overlap, so each token feeds two series: projections and position bias are twice as wide
    compressor = 2 * hidden * 2 * head + rates[CSA] * 2 * head + head
    indexer = (2 * hidden * 2 * index_dim + rates[CSA] * 2 * index_dim + index_dim  # its own, narrower compressor
               + q_rank * index_heads * index_dim + hidden * index_heads)  # queries from the query latent, head weights
    return attention, compressor + indexer


def _v4_block(config: dict, kind: str, hashed: bool, rates: dict[str, int]) -> dict[str, int]:
    """Weights of one DeepSeek-V4 block: attention, MoE, two hyper-connections, two norms."""
    hidden, n_hc = _field(config, "hidden_size"), _field(config, "hc_mult")
    attention, compressor = _v4_attention(config, kind, rates)
    expert = 3 * hidden * _field(config, "moe_intermediate_size")
    n_routed = _field(config, "n_routed_experts")
    mixes = (2 + n_hc) * n_hc  # per token: n_hc "pre" + n_hc "post" weights and an n_hc x n_hc mixing matrix
    return {"attention": attention, "compressors and indexers": compressor,
            "hyper-connections": 2 * (mixes * n_hc * hidden + mixes + 3),  # attention's and FFN's: fn, base, 3 scales
            "routed experts": n_routed * expert, "shared experts": _field(config, "n_shared_experts") * expert,
            "routers": n_routed * hidden + (0 if hashed else n_routed),  # hash layers need no balance bias
            "norms": 2 * hidden}


def attention_params(config: dict) -> int:
    """Weights of one attention block, norms inside it included (MLA for DeepSeek-V2/V3, GQA otherwise)."""
    family = _family(config)
    if family == "deepseek_v4":
        raise ValueError("DeepSeek-V4's attention differs by layer kind: see count_params(config).breakdown")
    hidden, heads = _field(config, "hidden_size"), _field(config, "num_attention_heads")
    if family in MLA:
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
    model_type = _family(config)
    if model_type == "mixtral":
        n_routed, expert_hidden, n_shared, moe_layers = config["num_local_experts"], config["intermediate_size"], 0, layers
    elif model_type == "qwen3_moe":
        n_routed, expert_hidden, n_shared, moe_layers = _field(config, "num_experts"), _field(config, "moe_intermediate_size"), 0, layers
    else:  # DeepSeek: the first first_k_dense_replace layers are dense (none in V4)
        n_routed, expert_hidden = _field(config, "n_routed_experts"), _field(config, "moe_intermediate_size")
        n_shared, moe_layers = _field(config, "n_shared_experts"), layers - config.get("first_k_dense_replace", 0)
    expert = 3 * hidden * expert_hidden
    biased = moe_layers if model_type == "deepseek_v3" else 0  # layers with a balance bias, one value per expert
    if model_type == "deepseek_v4":  # hash-routed layers need none
        biased = moe_layers - v4_schedule(config)[1].count("hash_moe")
    routers = moe_layers * n_routed * hidden + biased * n_routed
    embeddings = _field(config, "vocab_size") * hidden * (1 if config.get("tie_word_embeddings") else 2)
    return {"routed experts": moe_layers * n_routed * expert, "shared experts": moe_layers * n_shared * expert,
            "routers": routers, "embeddings and output head": embeddings,
            "active routed experts": moe_layers * _field(config, "num_experts_per_tok") * expert, "moe layers": moe_layers}


def _count_v4(config: dict) -> ParamCount:
    """count_params for DeepSeek-V4: its blocks differ by attention kind and by routing (hash or learned)."""
    hidden, layers, n_hc = _field(config, "hidden_size"), _field(config, "num_hidden_layers"), _field(config, "hc_mult")
    kinds, mlp, rates = v4_schedule(config)
    moe = moe_params(config)
    breakdown = {"embeddings and output head": moe["embeddings and output head"], "attention": 0,
                 "compressors and indexers": 0, "hyper-connections": n_hc * n_hc * hidden + n_hc + 1,  # the final head
                 "dense FFN layers": 0, "routed experts": 0, "shared experts": 0, "routers": 0, "norms": hidden}
    for kind, mlp_kind in zip(kinds, mlp):
        for name, value in _v4_block(config, kind, mlp_kind == "hash_moe", rates).items():
            breakdown[name] += value
    total = sum(breakdown.values())
    bias = (layers - mlp.count("hash_moe")) * config["n_routed_experts"]
    notes = [f"the count includes the routers' balance biases ({bias:,} values, e_score_correction_bias), which "
             f"transformers registers as buffers, not parameters: its parameter count is {total - bias:,}",
             f"the {mlp.count('hash_moe')} hash-routed layers' token-to-expert table (tid2eid, vocab_size x top-k "
             "integers) is a fixed lookup, not a weight: neither count includes it (transformers: a buffer)"]
    mtp = 0
    if config.get("num_nextn_predict_layers"):
        # as in DeepSeek's reference code: one more block (its attention kind is the extra compress_ratios entry,
        # its MoE is not hash-routed), e_proj and h_proj (d x d), three norms, its own hyper-connection head;
        # it shares the embedding and the output head. transformers does not build it.
        ratios = config.get("compress_ratios") or []
        kind = V4_RATIO_KINDS[ratios[layers]] if len(ratios) > layers else SLIDING
        block = sum(_v4_block(config, kind, False, rates).values())
        extra = 2 * hidden * hidden + 3 * hidden + n_hc * n_hc * hidden + n_hc + 1
        mtp = config["num_nextn_predict_layers"] * (block + extra)
    active = total - moe["routed experts"] + moe["active routed experts"]
    return ParamCount(total, active, breakdown, mtp, notes)


def count_params(config: dict) -> ParamCount:
    """Total and active parameters with a per-component breakdown (see the module docstring for conventions)."""
    if _family(config) == "deepseek_v4":
        return _count_v4(config)
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

    attention: "native" (MLA for DeepSeek-V2/V3: the latent plus the shared rope key; GQA otherwise), or "mha" for
    the same model with plain multi-head attention (every head stores its own keys and values). DeepSeek-V4's
    cache per token depends on the context length: use ``kv_cache_bytes(config, context=...)``.
    """
    family, layers = _family(config), _field(config, "num_hidden_layers")
    if family == "deepseek_v4":
        raise ValueError("DeepSeek-V4's KV cache per token depends on the context (a sliding window plus compressed "
                         "entries): use kv_cache_bytes(config, context=n) / n")
    heads, hidden = _field(config, "num_attention_heads"), _field(config, "hidden_size")
    if family in MLA:
        if attention == "native":
            per_layer = config["kv_lora_rank"] + config["qk_rope_head_dim"]
        else:
            per_layer = heads * (config["qk_nope_head_dim"] + config["qk_rope_head_dim"] + config["v_head_dim"])
    else:
        head_dim = config.get("head_dim") or hidden // heads
        kv_heads = config["num_key_value_heads"] if attention == "native" else heads
        per_layer = 2 * kv_heads * head_dim
    return layers * per_layer * bytes_per_value


def kv_cache_bytes(config: dict, *, context: int, bytes_per_value: int = 2) -> int:
    """KV-cache bytes of one sequence of ``context`` tokens, all layers of the main model (notebook 08).

    GQA and MLA keep the same amount for every token: context x kv_cache_bytes_per_token (sliding windows in
    GQA configs are ignored). DeepSeek-V4 keeps, per layer, one KV head of head_dim values (key = value) for
    each of the last min(context, sliding_window) tokens, plus on CSA/HCA layers one compressed entry of head_dim
    values per compression-rate tokens (context // rate); CSA layers also keep the indexer's compressed keys,
    index_head_dim values per entry. Simplified: one bytes_per_value for every value, where V4 stores the rope
    dims in BF16, the rest in FP8 and the indexer keys in FP4; no partial windows, paging or MTP layer.
    """
    if _family(config) != "deepseek_v4":
        return context * kv_cache_bytes_per_token(config, bytes_per_value=bytes_per_value)
    head, window = _field(config, "head_dim"), _field(config, "sliding_window")
    kinds, _, rates = v4_schedule(config)
    values = len(kinds) * min(context, window) * head
    values += sum(context // rates[kind] * (head + (config["index_head_dim"] if kind == CSA else 0))
                  for kind in kinds if kind != SLIDING)
    return values * bytes_per_value


def flops_per_token(config: dict, *, context: int = 4096) -> int:
    """Forward FLOPs per token: 2 per active weight (the embedding lookup is free) plus attention over ``context``.

    For DeepSeek-V4 the attention term counts the entries each query reads (window, CSA's top-k compressed
    entries, all of HCA's) with one shared head_dim-wide key/value, plus the indexer scoring every CSA entry.
    """
    count = count_params(config)
    vocab, hidden = config["vocab_size"], config["hidden_size"]
    weights = count.active - vocab * hidden  # the input embedding is a lookup; the output head is a matmul
    heads, layers = config["num_attention_heads"], config["num_hidden_layers"]
    if config["model_type"] == "deepseek_v4":
        kinds, _, rates = v4_schedule(config)
        attention = 0
        for kind in kinds:
            compressed = 0 if kind == SLIDING else context // rates[kind]
            selected = min(compressed, config["index_topk"]) if kind == CSA else compressed
            read = min(context, config["sliding_window"]) + selected
            attention += 2 * heads * 2 * config["head_dim"] * read  # scores and weighted sum
            if kind == CSA:
                attention += 2 * config["index_n_heads"] * config["index_head_dim"] * compressed
        return 2 * weights + attention
    if config["model_type"] in MLA:
        score_dims = config["qk_nope_head_dim"] + config["qk_rope_head_dim"] + config["v_head_dim"]
    else:
        score_dims = 2 * (config.get("head_dim") or hidden // heads)
    return 2 * weights + 2 * layers * heads * score_dims * context
