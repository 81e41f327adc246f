"""Labs around the MoE layer: the cost calculator (notebook 02), the routing explorer (notebook 03) and the
expert colouring of a text (notebook 05)."""
from __future__ import annotations

import html

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from ..config import ModelConfig
from ..data import encode
from ..hardware import model_device
from ..moe import capture_ffn_inputs, moe_cost
from ..routing import RouterConfig
from ..transformer import Transformer
from ._view import describe, figure_view, set_figure, set_text, show_byte, text_view


def moe_calculator(*, d_model: int = 128) -> widgets.VBox:
    """Sliders for experts, top-k, expert size and shared experts: what one MoE layer stores and uses (notebook 02)."""
    n_experts = describe(widgets.IntSlider(value=8, min=1, max=256, description="experts"), "routed experts in the layer")
    top_k = describe(widgets.IntSlider(value=2, min=1, max=16, description="top-k"), "routed experts each token uses")
    expert_hidden = describe(widgets.IntSlider(value=176, min=8, max=1024, step=8, description="expert hidden"),
                             "hidden width of one SwiGLU expert")
    n_shared = describe(widgets.IntSlider(value=0, min=0, max=4, description="shared"),
                        "shared experts: every token uses them")
    output = text_view()

    def update(_=None):
        top_k.max = n_experts.value
        cost = moe_cost(d_model=d_model, n_experts=n_experts.value, top_k=top_k.value,
                        expert_hidden=expert_hidden.value, n_shared=n_shared.value)
        dense = 3 * d_model * ModelConfig().ffn_hidden  # the course's dense SwiGLU FFN
        set_text(output, "\n".join([
            f"total parameters     {cost.total_params:>14,}  ({cost.total_params / dense:.1f}x the dense FFN)",
            f"active per token     {cost.active_params:>14,}  ({cost.active_params / cost.total_params:.1%} of total)",
            f"FLOPs per token      {cost.flops_per_token:>14,}  ({cost.flops_per_token / (2 * dense):.2f}x dense)",
            f"expert combinations  {cost.combinations:>14,}",
            f"weights in memory    {cost.bytes_fp32 / 2**20:>11.2f} MiB fp32, {cost.bytes_bf16 / 2**20:.2f} MiB bf16"]))

    for control in (n_experts, top_k, expert_hidden, n_shared):
        control.observe(update, names="value")
    box = widgets.VBox([widgets.HBox([n_experts, top_k]), widgets.HBox([expert_hidden, n_shared]), output])
    box.controls = dict(n_experts=n_experts, top_k=top_k, expert_hidden=expert_hidden, n_shared=n_shared)
    box.output = output
    update()
    return box


def routing_explorer(model: Transformer, texts: dict[str, str]) -> widgets.VBox:
    """Re-route a trained MoE model's real hidden states with another gate, k, capacity and groups (notebook 03).

    The gate weights are the trained layer's; only the routing rule changes, so differences are the rule's.
    """
    moe_blocks = model.moe_blocks()
    n_experts = model.blocks[moe_blocks[0]].ffn.n_experts
    text = describe(widgets.Dropdown(options=list(texts.items()), description="text"), "the text routed")
    layer = describe(widgets.Dropdown(options=moe_blocks, description="layer"), "which MoE block's router")
    score = describe(widgets.Dropdown(options=["softmax", "sigmoid", "sqrt_softplus"], description="gate"),
                     "the gate turning router logits into scores (notebook 03, section 1)")
    top_k = describe(widgets.IntSlider(value=2, min=1, max=n_experts, description="top-k"), "experts per token")
    capacity_factor = describe(widgets.FloatSlider(value=0.0, min=0.0, max=3.0, step=0.25,
                                                   description="capacity (0 = unlimited)"),
                               "slots per expert as a multiple of an even share; overflow is dropped")
    n_group = describe(widgets.Dropdown(options=[g for g in (1, 2, 4) if n_experts % g == 0], description="groups"),
                       "group-limited routing: experts split into this many groups")
    topk_group = describe(widgets.IntSlider(value=1, min=1, max=1, description="groups kept"),
                          "how many groups each token may use")
    output = figure_view()

    def draw(_=None):
        topk_group.max = n_group.value
        topk_group.disabled = n_group.value == 1  # one group: nothing to limit
        per_group = n_experts // n_group.value
        if n_group.value > 1 and topk_group.value * per_group < top_k.value:
            topk_group.value = -(-top_k.value // per_group)
        tokens = encode(text.value)[: model.config.context_length][None]
        hidden = capture_ffn_inputs(model, tokens)[layer.value][0]  # (seq, d_model)
        config = RouterConfig(score=score.value, normalize=True, n_group=n_group.value,
                              topk_group=topk_group.value if n_group.value > 1 else 1,
                              capacity_factor=capacity_factor.value or None)
        with torch.no_grad():
            routing = model.blocks[layer.value].ffn.router_with_rule(top_k.value, config)(hidden).to("cpu")
        weights = torch.zeros(hidden.shape[0], n_experts).scatter_(1, routing.indices, routing.weights)
        figure, (ax_map, ax_load) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
        ax_map.imshow(weights.T.numpy(), aspect="auto", cmap="Blues")
        labels = [show_byte(t) for t in tokens[0].tolist()]
        ax_map.set_xticks(range(len(labels)), labels, fontsize=7)
        dropped = (~routing.kept_mask()).any(-1)
        for position in torch.nonzero(dropped).flatten().tolist():
            ax_map.axvline(position, color="red", alpha=0.3)
        ax_map.set_ylabel("expert")
        ax_map.set_title(f"combine weights (red: an assignment dropped); {routing.dropped_fraction():.0%} dropped")
        ax_load.barh(range(n_experts), routing.load(n_experts).numpy())
        ax_load.invert_yaxis()
        ax_load.set_title("load (assignments)")
        figure.tight_layout()
        set_figure(output, figure)

    for control in (text, layer, score, top_k, capacity_factor, n_group, topk_group):
        control.observe(draw, names="value")
    box = widgets.VBox([widgets.HBox([text, layer, score]), widgets.HBox([top_k, capacity_factor]),
                        widgets.HBox([n_group, topk_group]), output])
    box.controls = dict(text=text, layer=layer, score=score, top_k=top_k, capacity_factor=capacity_factor,
                        n_group=n_group, topk_group=topk_group)
    box.output = output
    draw()
    return box


EXPERT_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                  "#9c755f", "#bab0ac")


def expert_colouring(model: Transformer, texts: dict[str, str]) -> widgets.VBox:
    """Type or pick a text: every byte coloured by its top expert, one line per MoE layer (notebook 05)."""
    moe_blocks = model.moe_blocks()  # the labels: block numbers
    text = describe(widgets.Textarea(value=next(iter(texts.values())), description="text",
                                     layout=widgets.Layout(width="90%")), "type any text; each byte gets its expert's colour")
    pick = describe(widgets.Dropdown(options=list(texts.items()), description="examples"), "a sample text per domain")
    output = text_view()

    @torch.no_grad()
    def draw(_=None):
        tokens = encode(text.value)[: model.config.context_length]
        if tokens.numel() == 0:
            output.value = "<i>type some text</i>"
            return
        was_training = model.training
        model.eval()
        routings = model(tokens[None].to(model_device(model)), return_aux=True).routing
        model.train(was_training)
        rows = []
        for layer_id, routing in zip(moe_blocks, routings, strict=True):
            top = routing.indices[:, 0].tolist()  # each byte's first (highest-weight) expert
            spans = "".join(
                f"<span title='expert {e}' style='background:{EXPERT_COLOURS[e % len(EXPERT_COLOURS)]};color:white;"
                f"font-family:monospace;padding:1px'>{html.escape(show_byte(t))}</span>"
                for t, e in zip(tokens.tolist(), top))
            rows.append(f"<div style='margin:4px 0'><b>layer {layer_id}</b> {spans}</div>")
        legend = " ".join(f"<span style='background:{EXPERT_COLOURS[e % len(EXPERT_COLOURS)]};color:white;padding:1px 4px'>"
                          f"{e}</span>" for e in range(model.moe_layers()[0].n_experts))
        output.value = "".join(rows) + f"<div>experts: {legend}</div>"

    pick.observe(lambda change: setattr(text, "value", change["new"]), names="value")
    text.observe(draw, names="value")
    box = widgets.VBox([pick, text, output])
    box.controls = dict(text=text, pick=pick)
    box.output = output
    draw()
    return box
