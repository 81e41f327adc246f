"""ipywidgets labs: around real models (notebooks 01-05) and around the licence catalogue (notebook 07).

Each builder returns the widget and keeps its controls as attributes, so tests (and the browser test) can move a
control and read the output.
"""
from __future__ import annotations

import html
import io

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from .data import decode, encode
from .plots import plot_attention
from .transformer import ModelConfig, Transformer, generate


# Outputs are widget values (HTML text, PNG images), not captured prints: they live in the widget state, so they
# update in the browser and can be read back in tests without a kernel.

def _text_view() -> widgets.HTML:
    return widgets.HTML()


def _set_text(view: widgets.HTML, text: str) -> None:
    view.value = f"<pre style='white-space: pre-wrap; line-height: 1.3'>{html.escape(text)}</pre>"


def _set_figure(view: widgets.Image, figure) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    view.value = buffer.getvalue()


def _show_byte(token: int) -> str:
    return {10: "\\n", 32: "␣", 9: "\\t"}.get(token, decode([token]))


def sampling_lab(model: Transformer, prompts: dict[str, str], *, seed: int = 0) -> widgets.VBox:
    """Pick a prompt, a temperature and a top-k, press Sample: the model continues the prompt (notebook 01)."""
    prompt = widgets.Dropdown(options=list(prompts.items()), description="prompt")
    temperature = widgets.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.1, description="temperature")
    top_k = widgets.IntSlider(value=0, min=0, max=64, description="top-k (0=off)")
    length = widgets.IntSlider(value=120, min=20, max=300, step=20, description="new bytes")
    button = widgets.Button(description="Sample", button_style="primary")
    output = _text_view()
    draws = [seed]

    def sample(_=None):
        generator = torch.Generator().manual_seed(draws[-1])
        tokens = generate(model, encode(prompt.value), max_new_tokens=length.value, temperature=temperature.value,
                          top_k=top_k.value or None, generator=generator)
        _set_text(output, decode(tokens))

    def sample_again(_=None):
        draws.append(draws[-1] + 1)  # a new draw each press, still reproducible from the seed
        sample()

    button.on_click(sample_again)
    for control in (prompt, temperature, top_k, length):
        control.observe(sample, names="value")
    box = widgets.VBox([widgets.HBox([prompt, button]), temperature, top_k, length, output])
    box.controls = dict(prompt=prompt, temperature=temperature, top_k=top_k, length=length, button=button)
    box.output = output
    sample()
    return box


def attention_viewer(model: Transformer, text: str) -> widgets.VBox:
    """Type a text, pick a layer and a head: see which earlier bytes each byte attends to (notebook 01)."""
    text_box = widgets.Text(value=text, description="text", continuous_update=False)
    layer = widgets.IntSlider(value=0, min=0, max=model.config.n_layers - 1, description="layer")
    head = widgets.IntSlider(value=0, min=0, max=model.config.n_heads - 1, description="head")
    output = widgets.Image(format="png")

    @torch.no_grad()
    def draw(_=None):
        tokens = encode(text_box.value)[: model.config.context_length][None]  # (1, seq)
        device = next(model.parameters()).device
        x = model.token_embedding(tokens.to(device)) + model.position_embedding(torch.arange(tokens.shape[1], device=device))
        for block in model.blocks[: layer.value]:
            x = block(x, tokens)
        block = model.blocks[layer.value]
        weights = block.attn.attention_weights(block.attn_norm(x))[0, head.value].cpu().numpy()  # (seq, seq)
        figure, ax = plt.subplots(figsize=(5, 5))
        plot_attention(weights, [_show_byte(t) for t in tokens[0].tolist()], ax=ax,
                       title=f"layer {layer.value}, head {head.value}")
        _set_figure(output, figure)

    for control in (text_box, layer, head):
        control.observe(draw, names="value")
    box = widgets.VBox([text_box, widgets.HBox([layer, head]), output])
    box.controls = dict(text=text_box, layer=layer, head=head)
    box.output = output
    draw()
    return box


def moe_calculator(*, d_model: int = 128) -> widgets.VBox:
    """Sliders for experts, top-k, expert size and shared experts: what one MoE layer stores and uses (notebook 02)."""
    from .moe import moe_cost

    n_experts = widgets.IntSlider(value=8, min=1, max=256, description="experts")
    top_k = widgets.IntSlider(value=2, min=1, max=16, description="top-k")
    expert_hidden = widgets.IntSlider(value=176, min=8, max=1024, step=8, description="expert hidden")
    n_shared = widgets.IntSlider(value=0, min=0, max=4, description="shared")
    output = _text_view()

    def update(_=None):
        top_k.max = n_experts.value
        cost = moe_cost(d_model=d_model, n_experts=n_experts.value, top_k=top_k.value,
                        expert_hidden=expert_hidden.value, n_shared=n_shared.value)
        dense = 3 * d_model * ModelConfig().ffn_hidden  # the course's dense SwiGLU FFN
        _set_text(output, "\n".join([
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
    from .moe import capture_ffn_inputs
    from .routing import Router, RouterConfig

    moe_layers = [i for i, block in enumerate(model.blocks) if hasattr(block.ffn, "router")]
    n_experts = model.blocks[moe_layers[0]].ffn.n_experts
    text = widgets.Dropdown(options=list(texts.items()), description="text")
    layer = widgets.Dropdown(options=moe_layers, description="layer")
    score = widgets.Dropdown(options=["softmax", "sigmoid", "sqrt_softplus"], description="gate")
    top_k = widgets.IntSlider(value=2, min=1, max=n_experts, description="top-k")
    capacity_factor = widgets.FloatSlider(value=0.0, min=0.0, max=3.0, step=0.25, description="capacity (0=∞)")
    n_group = widgets.Dropdown(options=[g for g in (1, 2, 4) if n_experts % g == 0], description="groups")
    topk_group = widgets.IntSlider(value=1, min=1, max=1, description="groups kept")
    output = widgets.Image(format="png")

    def draw(_=None):
        topk_group.max = n_group.value
        per_group = n_experts // n_group.value
        if n_group.value > 1 and topk_group.value * per_group < top_k.value:
            topk_group.value = -(-top_k.value // per_group)
        tokens = encode(text.value)[: model.config.context_length][None]
        hidden = capture_ffn_inputs(model, tokens)[layer.value][0]  # (seq, d_model)
        config = RouterConfig(score=score.value, normalize=True, n_group=n_group.value,
                              topk_group=topk_group.value if n_group.value > 1 else 1,
                              capacity_factor=capacity_factor.value or None)
        router = Router(model.config.d_model, n_experts, top_k.value, config)
        router.gate.weight.data.copy_(model.blocks[layer.value].ffn.router.gate.weight)
        with torch.no_grad():
            routing = router(hidden)
        weights = torch.zeros(hidden.shape[0], n_experts).scatter_(1, routing.indices, routing.weights)
        figure, (ax_map, ax_load) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
        ax_map.imshow(weights.T.numpy(), aspect="auto", cmap="Blues")
        labels = [_show_byte(t) for t in tokens[0].tolist()]
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
        _set_figure(output, figure)

    for control in (text, layer, score, top_k, capacity_factor, n_group, topk_group):
        control.observe(draw, names="value")
    box = widgets.VBox([widgets.HBox([text, layer, score]), widgets.HBox([top_k, capacity_factor]),
                        widgets.HBox([n_group, topk_group]), output])
    box.controls = dict(text=text, layer=layer, score=score, top_k=top_k, capacity_factor=capacity_factor,
                        n_group=n_group, topk_group=topk_group)
    box.output = output
    draw()
    return box


def balancing_lab(corpus, *, model_config, train_config) -> widgets.VBox:
    """Pick a balancing method and its coefficient, press Run: a short live training, with the load histogram
    and MaxVio updating as it trains, a progress bar and a Stop button (notebook 04).

    Training runs in a background thread so that the Stop button (and the rest of the notebook) stay live.
    """
    import threading

    from .balancing import BalanceConfig
    from .train import StopTraining, train

    methods = {"none": None, "aux loss (alpha)": "aux_loss", "z-loss": "z_loss",
               "loss-free bias (rate u)": "bias_update_rate", "sequence-wise loss": "sequence_loss"}
    method = widgets.Dropdown(options=list(methods), value="loss-free bias (rate u)", description="method")
    coefficient = widgets.FloatLogSlider(value=1e-2, base=10, min=-5, max=0, step=0.5, description="coefficient")
    run = widgets.Button(description="Run", button_style="success")
    stop = widgets.Button(description="Stop", button_style="danger", disabled=True)
    progress = widgets.IntProgress(value=0, min=0, max=train_config.steps, description="step")
    status = widgets.HTML()
    plot = widgets.Image(format="png")
    state = {"stop": False, "thread": None}

    def draw(history, loads):
        figure, (ax_load, ax_vio) = plt.subplots(1, 2, figsize=(10, 3.2))
        for layer, load in enumerate(loads):
            ax_load.bar([e + 0.8 * layer / len(loads) for e in range(len(load))], load, width=0.8 / len(loads),
                        label=f"layer {layer}")
        ax_load.set_xlabel("expert"); ax_load.set_ylabel("assignments (last batch)"); ax_load.legend(fontsize=7)
        ax_vio.plot(history.step, history.extra.get("max_violation_batch", []))
        ax_vio.set_xlabel("step"); ax_vio.set_ylabel("MaxVio (batch)"); ax_vio.set_xlim(0, train_config.steps)
        ax_vio.grid(alpha=0.3)
        figure.tight_layout()
        _set_figure(plot, figure)

    def on_step(info):
        progress.value = info.step
        if info.step % 10 == 0 or info.step == train_config.steps:
            draw(info.history, info.history.routing[-1]["load"] if info.history.routing else [])
            status.value = f"step {info.step}: loss {info.loss:.3f}, MaxVio {info.history.extra['max_violation_batch'][-1]:.2f}"
        if state["stop"]:
            raise StopTraining

    def work():
        key = methods[method.value]
        balance = BalanceConfig(**({key: coefficient.value} if key else {}))
        torch.manual_seed(train_config.seed)
        model = Transformer(model_config)
        history = train(model, corpus, train_config, balance=balance, callbacks=[on_step], progress=False)
        status.value += (f" — stopped at step {len(history.step)}" if state["stop"]
                         else f" — done: validation loss {history.val_loss[-1]:.3f}")
        run.disabled, stop.disabled = False, True

    def start(_=None):
        state["stop"] = False
        run.disabled, stop.disabled = True, False
        progress.value = 0
        status.value = f"training with {method.value} = {coefficient.value:g} ..."
        state["thread"] = threading.Thread(target=work, daemon=True)
        state["thread"].start()

    def halt(_=None):
        state["stop"] = True

    run.on_click(start)
    stop.on_click(halt)
    box = widgets.VBox([widgets.HBox([method, coefficient]), widgets.HBox([run, stop, progress]), status, plot])
    box.controls = dict(method=method, coefficient=coefficient, run=run, stop=stop)
    box.output, box.status, box.state = plot, status, state
    return box


EXPERT_COLOURS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                  "#9c755f", "#bab0ac")


def expert_colouring(model: Transformer, texts: dict[str, str]) -> widgets.VBox:
    """Type or pick a text: every byte coloured by its top expert, one line per MoE layer (notebook 05)."""
    from .balancing import moe_layers

    text = widgets.Textarea(value=next(iter(texts.values())), description="text", layout=widgets.Layout(width="90%"))
    pick = widgets.Dropdown(options=list(texts.items()), description="examples")
    output = _text_view()

    @torch.no_grad()
    def draw(_=None):
        tokens = encode(text.value)[: model.config.context_length]
        if tokens.numel() == 0:
            output.value = "<i>type some text</i>"
            return
        was_training = model.training
        model.eval()
        model(tokens[None].to(next(model.parameters()).device))
        model.train(was_training)
        rows = []
        for layer_id, layer in enumerate(moe_layers(model)):
            top = layer.last_routing.indices[:, 0].tolist()  # each byte's first (highest-weight) expert
            spans = "".join(
                f"<span title='expert {e}' style='background:{EXPERT_COLOURS[e % len(EXPERT_COLOURS)]};color:white;"
                f"font-family:monospace;padding:1px'>{html.escape(_show_byte(t))}</span>"
                for t, e in zip(tokens.tolist(), top))
            rows.append(f"<div style='margin:4px 0'><b>layer {layer_id}</b> {spans}</div>")
        legend = " ".join(f"<span style='background:{EXPERT_COLOURS[e % len(EXPERT_COLOURS)]};color:white;padding:1px 4px'>"
                          f"{e}</span>" for e in range(moe_layers(model)[0].n_experts))
        output.value = "".join(rows) + f"<div>experts: {legend}</div>"

    pick.observe(lambda change: setattr(text, "value", change["new"]), names="value")
    text.observe(draw, names="value")
    box = widgets.VBox([pick, text, output])
    box.controls = dict(text=text, pick=pick)
    box.output = output
    draw()
    return box


def licence_checker() -> widgets.VBox:
    """Pick a model, tick the intended uses, read the verdict with its sources (notebook 07)."""
    from .licenses import check, model_ids, osaid_classification

    model = widgets.Dropdown(options=model_ids(), value="deepseek-ai/DeepSeek-V4-Pro", description="model",
                             layout=widgets.Layout(width="420px"))
    commercial = widgets.Checkbox(value=True, description="commercial use with")
    mau = widgets.BoundedIntText(value=1_000_000, min=0, max=10**10, step=1_000_000, description="monthly users")
    uses = {key: widgets.Checkbox(value=False, description=label) for key, label in (
        ("redistribute_original", "share the original weights"), ("redistribute_modified", "share modified weights"),
        ("train_on_outputs", "train another model on its outputs"), ("military", "military use"),
        ("eu_multimodal", "EU company, multimodal model"))}
    publish = widgets.Checkbox(value=False, description="fine-tune and publish as")
    new_name = widgets.Text(value="CourseBot-7B", description="name", continuous_update=False)
    output = widgets.HTML()

    def update(_=None):
        use = {key: True for key, box in uses.items() if box.value}
        if commercial.value:
            use["commercial_mau"] = mau.value
        if publish.value:
            use["publish_finetune_as"] = new_name.value or "unnamed"
        if not use:
            output.value = "<p>Tick at least one intended use.</p>"
            return
        classification = osaid_classification(model.value)
        output.value = (check(model.value, **use).to_html()
                        + f"<p>Under the OSI Open Source AI Definition: <b>{classification.category}</b> "
                          f"({html.escape('; '.join(classification.reasons))}).</p>")

    for control in (model, commercial, mau, publish, new_name, *uses.values()):
        control.observe(update, names="value")
    box = widgets.VBox([model, widgets.HBox([commercial, mau]), widgets.HBox([publish, new_name]),
                        widgets.HBox(list(uses.values())[:3]), widgets.HBox(list(uses.values())[3:]), output])
    box.controls = dict(model=model, commercial=commercial, mau=mau, publish=publish, name=new_name, **uses)
    box.output = output
    update()
    return box

