"""The model's settings as typed dataclasses: ``ModelConfig`` for the transformer, ``MoEConfig`` for its experts,
``DeepSeekConfig`` for the mini DeepSeek-V3 and V4 of notebook 11.

They live apart from the modules they describe so that every part can read them and none has to import another
part: ``transformer``, ``moe`` and ``mtp`` depend on this file, and ``course_lib.model`` assembles them.
A config is plain data: ``to_dict()`` gives JSON-able values, and ``ModelConfig(**that_dict)`` rebuilds it
(checkpoints and releases store it that way). Taught in notebooks 01 (dense) and 02 (MoE).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .data import VOCAB_SIZE
from .routing import RouterConfig


@dataclass
class MoEConfig:
    """The Mixture-of-Experts FFN of every block from ``first_dense_layers`` on (notebook 02)."""
    n_experts: int  # routed experts per layer
    top_k: int  # routed experts per token
    expert_hidden: int  # SwiGLU hidden width of one routed expert
    n_shared: int = 0  # always-on shared experts, fused into one SwiGLU of width n_shared * expert_hidden
    router: RouterConfig = field(default_factory=RouterConfig)  # a dict of its fields is converted
    dispatch: str = "sorted"  # "loop", "sorted" or "grouped" (course_lib.moe)
    first_dense_layers: int = 0  # dense SwiGLU in the first blocks (DeepSeek-V3's first_k_dense_replace)
    hash_layers: int = 0  # hash-routed MoE in the next blocks (DeepSeek-V4's first layers)
    swiglu_limit: float | None = None  # clamp the SwiGLU pre-activations to this (DeepSeek-V4: 10.0); None: no clamp

    def __post_init__(self):
        if isinstance(self.router, dict):
            self.router = RouterConfig(**self.router)
        if not isinstance(self.router, RouterConfig):
            raise TypeError(f"MoEConfig.router must be a RouterConfig or a dict of its fields, got {self.router!r}")
        for name in ("first_dense_layers", "hash_layers", "n_shared"):
            if getattr(self, name) < 0:
                raise ValueError(f"MoEConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.swiglu_limit is not None and not self.swiglu_limit > 0:
            raise ValueError(f"MoEConfig.swiglu_limit must be > 0 or None, got {self.swiglu_limit}")

    def to_dict(self) -> dict:
        return asdict(self)

    def layer_settings(self) -> dict:
        """The keyword arguments of ``course_lib.moe.MoE`` (everything but the layer schedule)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("first_dense_layers", "hash_layers")}


@dataclass
class ModelConfig:
    vocab_size: int = VOCAB_SIZE
    context_length: int = 64  # longest sequence the model accepts (learned position embeddings)
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    ffn_hidden: int = 352  # SwiGLU hidden width; about 8/3 * d_model keeps the FFN near the usual 8 d^2 params
    moe: MoEConfig | None = None  # the MoE FFN (notebook 02); None = dense everywhere. A dict is converted.
    mtp_depth: int = 0  # 1 adds DeepSeek-V3's multi-token-prediction module (notebook 08)
    mtp_loss_weight: float = 0.3  # its loss weight in training (V3: 0.3, later 0.1)

    def __post_init__(self):
        if isinstance(self.moe, dict):
            self.moe = MoEConfig(**self.moe)
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads", "ffn_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.mtp_depth not in (0, 1):
            raise ValueError(f"mtp_depth must be 0 or 1 (the course implements V3's depth-1 MTP), got {self.mtp_depth}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}: each head gets "
                f"d_model / n_heads dimensions. Pick n_heads among the divisors of {self.d_model}."
            )

    def to_dict(self) -> dict:
        return asdict(self)


ATTENTION_TYPES = ("mla", "sliding", "csa", "hca")  # V3's latent attention; V4's three attention blocks


@dataclass
class DeepSeekConfig:
    """A DeepSeek-V3 or V4 in miniature (notebook 11). Each field's comment names its Hugging Face ``config.json``
    namesake, so ``course_lib.hf_format`` can read a real config into it."""
    vocab_size: int
    d_model: int  # hidden_size
    n_layers: int  # num_hidden_layers
    n_heads: int  # num_attention_heads
    attention: tuple[str, ...]  # per layer: "mla" (V3) or V4's "sliding", "csa", "hca" (layer_types)
    moe: MoEConfig | None = None  # the routed FFN: first_dense_layers is first_k_dense_replace
    dense_hidden: int = 0  # intermediate_size: the dense SwiGLU of the first first_dense_layers blocks
    rms_eps: float = 1e-6  # rms_norm_eps
    rope_theta: float = 10000.0  # rope_theta (V4: of the sliding-window layers)
    rope_dim: int = 2  # qk_rope_head_dim: channels of each query and key head that carry RoPE
    # V3's multi-head latent attention
    q_lora_rank: int | None = None  # queries through a rank-q_lora_rank bottleneck; None: one plain projection
    kv_lora_rank: int = 0  # the latent c_KV that MLA caches
    qk_nope_dim: int = 0  # qk_nope_head_dim: position-free channels of each query and key head
    v_head_dim: int = 0
    # V4's hybrid attention
    head_dim: int = 0  # one shared key-value head of head_dim channels (and n_heads query heads)
    sliding_window: int = 128  # n_win
    csa_rate: int = 4  # m: tokens per compressed entry in CSA
    hca_rate: int = 128  # m': tokens per compressed entry in HCA
    index_heads: int = 0  # index_n_heads of the lightning indexer
    index_head_dim: int = 0
    index_topk: int = 0  # compressed entries each query keeps in CSA
    o_groups: int = 1  # grouped output projection: g groups of heads ...
    o_lora_rank: int = 0  # ... each projected to d_g channels
    compress_rope_theta: float = 160000.0  # RoPE base of the CSA and HCA layers
    # V4's manifold-constrained hyper-connections (mHC)
    hc_streams: int = 1  # hc_mult, n_hc: 1 is the plain residual stream
    sinkhorn_iters: int = 20  # hc_sinkhorn_iters, t_max
    hc_eps: float = 1e-6
    mtp_depth: int = 0  # 1 adds the multi-token-prediction module (V3 report §2.2; V4 keeps it)
    mtp_loss_weight: float = 0.3

    def __post_init__(self):
        if isinstance(self.moe, dict):
            self.moe = MoEConfig(**self.moe)
        self.attention = tuple(self.attention)
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "hc_streams"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"DeepSeekConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if len(self.attention) != self.n_layers or set(self.attention) - set(ATTENTION_TYPES):
            raise ValueError(f"DeepSeekConfig.attention needs one of {ATTENTION_TYPES} per layer "
                             f"({self.n_layers} layers), got {self.attention}")
        if "mla" in self.attention and len(set(self.attention)) > 1:
            raise ValueError("DeepSeekConfig.attention mixes V3's 'mla' with V4's attention types; pick one model")
        if self.rope_dim < 2 or self.rope_dim % 2:
            raise ValueError(f"DeepSeekConfig.rope_dim (qk_rope_head_dim) must be even and >= 2, got {self.rope_dim}")
        if self.is_v4:
            self._check_v4()
        elif min(self.kv_lora_rank, self.qk_nope_dim, self.v_head_dim) < 1:
            raise ValueError("MLA needs kv_lora_rank, qk_nope_dim (qk_nope_head_dim) and v_head_dim >= 1, got "
                             f"{self.kv_lora_rank}, {self.qk_nope_dim}, {self.v_head_dim}")
        if (self.moe is None or self.moe.first_dense_layers) and self.dense_hidden < 1:
            raise ValueError("dense blocks need dense_hidden (intermediate_size) >= 1")
        if self.mtp_depth not in (0, 1):
            raise ValueError(f"mtp_depth must be 0 or 1 (DeepSeek uses depth 1), got {self.mtp_depth}")

    def _check_v4(self) -> None:
        if self.q_lora_rank is None or self.q_lora_rank < 1 or self.head_dim <= self.rope_dim:
            raise ValueError(f"V4 attention needs q_lora_rank >= 1 and head_dim > rope_dim, got q_lora_rank="
                             f"{self.q_lora_rank}, head_dim={self.head_dim}, rope_dim={self.rope_dim}")
        if (self.n_heads * self.head_dim) % self.o_groups or self.o_lora_rank < 1:
            raise ValueError(f"the grouped output projection splits n_heads * head_dim = {self.n_heads * self.head_dim}"
                             f" into o_groups = {self.o_groups} equal groups, each projected to o_lora_rank >= 1 "
                             f"channels (got {self.o_lora_rank})")
        if "csa" in self.attention and (min(self.index_heads, self.index_topk) < 1
                                        or self.index_head_dim <= self.rope_dim):
            raise ValueError("CSA layers need the lightning indexer's index_heads >= 1, index_topk >= 1 and "
                             f"index_head_dim > rope_dim ({self.rope_dim}), got {self.index_heads}, "
                             f"{self.index_topk}, {self.index_head_dim}")
        if min(self.sliding_window, self.csa_rate, self.hca_rate) < 1:
            raise ValueError("sliding_window, csa_rate and hca_rate must be >= 1")

    @property
    def is_v4(self) -> bool:
        return self.attention[0] != "mla"

    def to_dict(self) -> dict:
        return {**asdict(self), "attention": list(self.attention)}  # JSON has lists, not tuples
