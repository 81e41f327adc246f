"""ipywidgets labs around real models. Each builder returns the widget and keeps its controls as attributes,
so tests (and the browser test) can move a control and read the output.
"""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from .data import decode, encode
from .plots import plot_attention
from .transformer import Transformer, generate


def _show_byte(token: int) -> str:
    return {10: "\\n", 32: "␣", 9: "\\t"}.get(token, decode([token]))


def sampling_lab(model: Transformer, prompts: dict[str, str], *, seed: int = 0) -> widgets.VBox:
    """Pick a prompt, a temperature and a top-k, press Sample: the model continues the prompt (notebook 01)."""
    prompt = widgets.Dropdown(options=list(prompts.items()), description="prompt")
    temperature = widgets.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.1, description="temperature")
    top_k = widgets.IntSlider(value=0, min=0, max=64, description="top-k (0=off)")
    length = widgets.IntSlider(value=120, min=20, max=300, step=20, description="new bytes")
    button = widgets.Button(description="Sample", button_style="primary")
    output = widgets.Output()

    def sample(_=None):
        generator = torch.Generator().manual_seed(seed)
        tokens = generate(model, encode(prompt.value), max_new_tokens=length.value, temperature=temperature.value,
                          top_k=top_k.value or None, generator=generator)
        output.clear_output()
        with output:
            print(decode(tokens))

    button.on_click(sample)
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
    output = widgets.Output()

    @torch.no_grad()
    def draw(_=None):
        tokens = encode(text_box.value)[: model.config.context_length][None]  # (1, seq)
        device = next(model.parameters()).device
        x = model.token_embedding(tokens.to(device)) + model.position_embedding(torch.arange(tokens.shape[1], device=device))
        for block in model.blocks[: layer.value]:
            x = block(x)
        block = model.blocks[layer.value]
        weights = block.attn.attention_weights(block.attn_norm(x))[0, head.value].cpu().numpy()  # (seq, seq)
        output.clear_output(wait=True)
        with output:
            figure, ax = plt.subplots(figsize=(5, 5))
            plot_attention(weights, [_show_byte(t) for t in tokens[0].tolist()], ax=ax,
                           title=f"layer {layer.value}, head {head.value}")
            display(figure)
            plt.close(figure)

    for control in (text_box, layer, head):
        control.observe(draw, names="value")
    box = widgets.VBox([text_box, widgets.HBox([layer, head]), output])
    box.controls = dict(text=text_box, layer=layer, head=head)
    box.output = output
    draw()
    return box
