"""Labs around a trained dense model: sampling and the attention viewer (notebook 01)."""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from ..data import decode, encode
from ..plots import plot_attention
from ..transformer import Transformer, attention_map, generate
from ._view import describe, figure_view, set_figure, set_text, show_byte, text_view


def sampling_lab(model: Transformer, prompts: dict[str, str], *, seed: int = 0) -> widgets.VBox:
    """Pick a prompt, a temperature and a top-k, press Sample: the model continues the prompt (notebook 01)."""
    prompt = describe(widgets.Dropdown(options=list(prompts.items()), description="prompt"),
                      "the text the model continues")
    temperature = describe(widgets.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.1, description="temperature"),
                           "divides the logits before the softmax: 0 = always the likeliest byte, higher = more random")
    top_k = describe(widgets.IntSlider(value=0, min=0, max=64, description="top-k (0 = off)"),
                     "sample only among the k likeliest bytes; 0 samples among all 256")
    length = describe(widgets.IntSlider(value=120, min=20, max=300, step=20, description="new bytes"),
                      "how many bytes to generate")
    button = widgets.Button(description="Sample", button_style="primary")
    output = text_view()
    draws = [seed]

    def sample(_=None):
        top_k.disabled = temperature.value == 0  # greedy decoding: there is nothing to sample among
        generator = torch.Generator().manual_seed(draws[-1])
        tokens = generate(model, encode(prompt.value), max_new_tokens=length.value, temperature=temperature.value,
                          top_k=top_k.value or None, generator=generator)
        set_text(output, decode(tokens))

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
    text_box = describe(widgets.Text(value=text, description="text", continuous_update=False),
                        f"the text to look at (its first {model.config.context_length} bytes); press Enter")
    layer = describe(widgets.IntSlider(value=0, min=0, max=model.config.n_layers - 1, description="layer"),
                     "which transformer block")
    head = describe(widgets.IntSlider(value=0, min=0, max=model.config.n_heads - 1, description="head"),
                    "which attention head of that block")
    output = figure_view()

    def draw(_=None):
        tokens = encode(text_box.value)[: model.config.context_length]  # (seq,)
        weights = attention_map(model, tokens, layer=layer.value)[head.value].cpu().numpy()  # (seq, seq)
        figure, ax = plt.subplots(figsize=(5.2, 5.2))  # drawn at the size shown: about 420 px, fits beside the controls
        plot_attention(weights, [show_byte(t) for t in tokens.tolist()], ax=ax,
                       title=f"layer {layer.value}, head {head.value}")
        set_figure(output, figure)

    for control in (text_box, layer, head):
        control.observe(draw, names="value")
    # controls on the left, the map on the right: both visible at once on a 1366 x 768 screen
    box = widgets.VBox([text_box, widgets.HBox([widgets.VBox([layer, head]), output])])
    box.controls = dict(text=text_box, layer=layer, head=head)
    box.output = output
    draw()
    return box
