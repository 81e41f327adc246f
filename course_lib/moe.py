"""The Mixture-of-Experts layer: a drop-in replacement for the dense SwiGLU FFN.

    moe(x)[t] = sum_j weights[t, j] * expert_forward(indices[t, j], x[t])  +  shared(x[t])

Three dispatch implementations compute the same thing (notebook 02 builds them, tests check they agree in
forward and backward):
- ``"loop"``: for each expert, find its tokens and run them; the readable reference;
- ``"sorted"``: sort the token-expert pairs by expert once, so each expert's tokens are one contiguous slice;
- ``"grouped"``: the same sorted slices, run as two grouped GEMMs (``torch._grouped_mm``) instead of a loop.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import MoEConfig
from .hardware import model_device
from .routing import Router, RouterConfig, Routing
from .transformer import RoutedFFN, SwiGLU, swiglu

DISPATCHES = ("loop", "sorted", "grouped")


class MoE(RoutedFFN):
    """Routed experts (SwiGLU, ``expert_hidden`` wide) plus ``n_shared`` always-on shared experts.

    d_model: width of the residual stream. n_experts: routed experts. top_k: experts per token.
    expert_hidden: hidden width of one routed expert. n_shared: shared experts, fused into one SwiGLU of width
    n_shared * expert_hidden as DeepSeek does. router: a RouterConfig or a dict of its fields.
    dispatch: "loop", "sorted" or "grouped". swiglu_limit: DeepSeek-V4's clamp of every expert's SwiGLU, or None.
    """

    def __init__(self, d_model: int, n_experts: int, top_k: int, expert_hidden: int, *, n_shared: int = 0,
                 router: RouterConfig | dict | None = None, dispatch: str = "sorted", vocab_size: int = 256,
                 swiglu_limit: float | None = None):
        super().__init__()
        router = RouterConfig(**router) if isinstance(router, dict) else router
        if expert_hidden < 1 or d_model < 1 or n_shared < 0:
            raise ValueError(f"need d_model >= 1, expert_hidden >= 1 and n_shared >= 0, "
                             f"got {d_model}, {expert_hidden}, {n_shared}")
        if dispatch not in DISPATCHES:
            raise ValueError(f"dispatch must be one of {DISPATCHES}, got {dispatch!r}")
        if dispatch == "grouped" and (d_model % 4 or expert_hidden % 4):
            raise ValueError(f"dispatch='grouped' needs d_model and expert_hidden divisible by 4 (16-byte rows for "
                             f"torch._grouped_mm), got {d_model} and {expert_hidden}; use dispatch='sorted'")
        self.d_model, self.n_experts, self.top_k, self.expert_hidden = d_model, n_experts, top_k, expert_hidden
        self.dispatch, self.vocab_size, self.swiglu_limit = dispatch, vocab_size, swiglu_limit
        self.router = Router(d_model, n_experts, top_k, router, vocab_size=vocab_size)
        # expert weights in nn.Linear layout (out, in), stacked: gate and up fused, as in the dense SwiGLU
        self.w_gate_up = nn.Parameter(torch.empty(n_experts, 2 * expert_hidden, d_model))
        self.w_down = nn.Parameter(torch.empty(n_experts, d_model, expert_hidden))
        nn.init.normal_(self.w_gate_up, std=0.02)
        nn.init.normal_(self.w_down, std=0.02)
        self.shared = SwiGLU(d_model, n_shared * expert_hidden, limit=swiglu_limit) if n_shared else None

    def route(self, x: torch.Tensor, token_ids: torch.Tensor | None = None) -> Routing:
        """Route (..., d_model) inputs; the Routing is over the flattened tokens."""
        self._check_input(x)
        return self.router(x.reshape(-1, self.d_model), None if token_ids is None else token_ids.reshape(-1))

    def router_with_rule(self, top_k: int, config: RouterConfig) -> Router:
        """A new router with this layer's trained gate weights and another routing rule, in eval mode.

        Re-routing the same hidden states with it isolates what the rule changes (notebook 03 and its explorer).
        """
        router = Router(self.d_model, self.n_experts, top_k, config, vocab_size=self.vocab_size)
        router = router.to(self.router.gate.weight.device)  # built where this layer lives, then given its weights
        router.gate.weight.data.copy_(self.router.gate.weight)
        return router.eval()

    def expert_forward(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Routed expert ``e`` applied to the rows of x: (n, d_model) -> (n, d_model)."""
        return self._swiglu(x, self.w_gate_up[e], self.w_down[e])

    def _swiglu(self, x: torch.Tensor, w_gate_up: torch.Tensor, w_down: torch.Tensor,
                row_weight: torch.Tensor | None = None) -> torch.Tensor:
        gate, up = F.linear(x, w_gate_up).split(self.expert_hidden, dim=-1)
        return F.linear(self._activation(gate, up, row_weight), w_down)

    def _activation(self, gate: torch.Tensor, up: torch.Tensor, row_weight: torch.Tensor | None) -> torch.Tensor:
        """silu(gate) * up (clamped for V4), times each row's routing weight when given. The down projection is
        linear, so scaling its input (expert_hidden wide) equals scaling its output (d_model wide), and costs less."""
        return swiglu(gate, up, self.swiglu_limit, scale=None if row_weight is None else row_weight.unsqueeze(1))

    def forward(self, x: torch.Tensor, token_ids: torch.Tensor | None = None, *,
                return_routing: bool = False) -> torch.Tensor | tuple[torch.Tensor, Routing]:
        """x: (..., d_model) -> the same shape; with ``return_routing``, also the Routing of the flattened tokens.

        token_ids (same leading shape as x) are needed by hash routing only.
        """
        routing = self.route(x, token_ids)
        flat = x.reshape(-1, self.d_model)  # (..., d) -> (T, d)
        routed = getattr(self, f"_dispatch_{self.dispatch}")(flat, routing)
        if self.shared is not None:
            routed = routed + self.shared(flat)
        out = routed.view_as(x)  # (T, d) -> (..., d)
        return (out, routing) if return_routing else out

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() < 2 or x.shape[-1] != self.d_model or not x.is_floating_point():
            raise ValueError(f"MoE input must be a float tensor (..., {self.d_model}), got {tuple(x.shape)} {x.dtype}")

    # ---- dispatch ------------------------------------------------------------------------------------------

    def _dispatch_loop(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        out = torch.zeros_like(x)
        kept = routing.kept_mask()
        for e in range(self.n_experts):
            token, slot = torch.where((routing.indices == e) & kept)  # which tokens chose e, in which slot
            if token.numel():
                weight = routing.weights[token, slot].unsqueeze(1)  # (n, 1)
                out.index_add_(0, token, weight * self.expert_forward(e, x.index_select(0, token)))
        return out

    def _sorted_pairs(self, routing: Routing) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Kept (token, weight) pairs sorted by expert, and how many each expert got."""
        k = routing.indices.shape[1]
        expert = routing.indices.flatten()  # (T*k,)
        token = torch.arange(expert.numel(), device=expert.device) // k
        weight = routing.weights.flatten()
        if routing.kept is not None:
            kept = routing.kept.flatten()
            expert, token, weight = expert[kept], token[kept], weight[kept]
        order = expert.argsort(stable=True)
        counts = torch.bincount(expert, minlength=self.n_experts).tolist()
        return token[order], weight[order], counts

    def _dispatch_sorted(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        token, weight, counts = self._sorted_pairs(routing)
        rows = x.index_select(0, token)  # (pairs, d): each expert's rows are contiguous
        # unbind once: indexing the 3-D weights per expert would make autograd build E full-size zero gradients
        gate_ups, downs = self.w_gate_up.unbind(0), self.w_down.unbind(0)
        outputs = [self._swiglu(chunk, gate_ups[e], downs[e], chunk_weight)
                   for e, (chunk, chunk_weight) in enumerate(zip(rows.split(counts), weight.split(counts))) if counts[e]]
        expert_out = torch.cat(outputs) if outputs else rows
        return torch.zeros_like(x).index_add_(0, token, expert_out)

    def _dispatch_grouped(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        token, weight, counts = self._sorted_pairs(routing)
        rows = x.index_select(0, token)  # (pairs, d)
        offsets = torch.tensor(counts, device=x.device).cumsum(0).to(torch.int32)  # end row of each expert
        gate_up = torch._grouped_mm(rows, self.w_gate_up.transpose(1, 2), offs=offsets)  # (pairs, 2h)
        gate, up = gate_up.split(self.expert_hidden, dim=-1)
        hidden = self._activation(gate, up, weight)  # (pairs, h), already scaled by the routing weights
        expert_out = torch._grouped_mm(hidden, self.w_down.transpose(1, 2), offs=offsets)  # (pairs, d)
        return torch.zeros_like(x).index_add_(0, token, expert_out)


def scheduled_moe(moe: MoEConfig | None, layer_index: int, *, d_model: int, vocab_size: int) -> MoE | None:
    """The MoE layer of block ``layer_index`` by the config's layer schedule: None (a dense FFN) in the first
    ``first_dense_layers`` blocks (DeepSeek-V3's first_k_dense_replace), hash-routed in the next ``hash_layers``
    (DeepSeek-V4), learned routing after that. Both model builders (course_lib.model, course_lib.deepseek) use it."""
    if moe is None or layer_index < moe.first_dense_layers:
        return None
    settings = moe.layer_settings()
    if layer_index < moe.first_dense_layers + moe.hash_layers:
        settings["router"] = dataclasses.replace(moe.router, kind="hash")
    return MoE(d_model, vocab_size=vocab_size, **settings)


# The course's standard MoE FFN (notebooks 02-05): the dense FFN's hidden width 352 split into 8 experts of 176,
# top-2, so a token's FFN compute equals the dense model's; Mixtral-style softmax router, renormalised.
STANDARD_MOE = MoEConfig(n_experts=8, top_k=2, expert_hidden=176, router=RouterConfig(normalize=True), dispatch="grouped")


# ---- what an MoE layer costs -------------------------------------------------------------------------------

@dataclass
class MoECost:
    total_params: int  # all expert and router weights of one layer
    active_params: int  # the weights one token uses
    flops_per_token: int  # forward, 2 per multiply-add
    combinations: int  # distinct sets of k routed experts a token can use
    bytes_fp32: int  # memory of the layer's weights
    bytes_bf16: int


def moe_cost(*, d_model: int, n_experts: int, top_k: int, expert_hidden: int, n_shared: int = 0) -> MoECost:
    """Parameters, FLOPs and routing combinations of one MoE layer (notebook 02's calculator)."""
    expert = 3 * d_model * expert_hidden
    router = d_model * n_experts
    total = n_experts * expert + n_shared * expert + router
    active = top_k * expert + n_shared * expert + router
    return MoECost(total, active, 2 * active, math.comb(n_experts, top_k), 4 * total, 2 * total)


@torch.no_grad()
def capture_ffn_inputs(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Run ``model`` on ``inputs`` and return, per block, the (batch, seq, d_model) input of its FFN.

    Notebook 03 re-routes these real hidden states with other gates to compare routers on the same tokens.
    The inputs follow the model's device.
    """
    captured: list[torch.Tensor] = []
    hooks = [block.ffn.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
             for block in model.blocks]
    try:
        model(inputs.to(model_device(model)))
    finally:
        for hook in hooks:
            hook.remove()
    return captured
