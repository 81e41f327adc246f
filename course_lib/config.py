"""The model's settings as typed dataclasses: ``ModelConfig`` for the transformer, ``MoEConfig`` for its experts.

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

    def __post_init__(self):
        if isinstance(self.router, dict):
            self.router = RouterConfig(**self.router)
        if not isinstance(self.router, RouterConfig):
            raise TypeError(f"MoEConfig.router must be a RouterConfig or a dict of its fields, got {self.router!r}")
        for name in ("first_dense_layers", "hash_layers", "n_shared"):
            if getattr(self, name) < 0:
                raise ValueError(f"MoEConfig.{name} must be >= 0, got {getattr(self, name)}")

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
