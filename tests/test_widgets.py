"""Widgets respond to their controls (the browser test in CI drives them for real)."""
import torch

from course_lib import widgets
from course_lib.moe import STANDARD_MOE
from course_lib.transformer import ModelConfig, Transformer


def output_text(box):
    return box.output.value


def test_moe_calculator_updates_with_sliders():
    box = widgets.moe_calculator()
    before = output_text(box)
    box.controls["n_experts"].value = 64
    after = output_text(box)
    assert before != after and "combinations" in after
    box.controls["top_k"].value = 16
    assert box.controls["top_k"].max == 64


def test_sampling_lab_resamples():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(context_length=32, d_model=32, n_layers=1, n_heads=2, ffn_hidden=32))
    box = widgets.sampling_lab(model, {"a": "hello", "b": "def "})
    first = output_text(box)
    box.controls["prompt"].value = "def "
    assert output_text(box) != first and "def " in output_text(box)
    again = output_text(box)
    box.controls["button"].click()
    assert output_text(box) != again  # a new draw


def test_attention_viewer_and_routing_explorer_draw():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(context_length=32, d_model=32, n_layers=2, n_heads=2, ffn_hidden=32,
                                    moe={**STANDARD_MOE, "expert_hidden": 16}))
    viewer = widgets.attention_viewer(model, "abc")
    first = bytes(viewer.output.value)
    viewer.controls["layer"].value = 1
    assert first.startswith(b"\x89PNG") and bytes(viewer.output.value) != first
    explorer = widgets.routing_explorer(model, {"t": "some text"})
    first = bytes(explorer.output.value)
    explorer.controls["n_group"].value = 4
    explorer.controls["capacity_factor"].value = 0.5
    assert bytes(explorer.output.value) != first
