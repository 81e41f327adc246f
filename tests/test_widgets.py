"""Widgets respond to their controls (the browser test in CI drives them for real)."""
import torch

import dataclasses

from course_lib.labs import balancing, experts, licences, text
from course_lib.model import build_model
from course_lib.moe import STANDARD_MOE
from course_lib.transformer import ModelConfig

SMALL_MOE = dataclasses.replace(STANDARD_MOE, expert_hidden=16)


def output_text(box):
    return box.output.value


def test_moe_calculator_updates_with_sliders():
    box = experts.moe_calculator()
    before = output_text(box)
    box.controls["n_experts"].value = 64
    after = output_text(box)
    assert before != after and "combinations" in after
    box.controls["top_k"].value = 16
    assert box.controls["top_k"].max == 64


def test_sampling_lab_resamples():
    torch.manual_seed(0)
    model = build_model(ModelConfig(context_length=32, d_model=32, n_layers=1, n_heads=2, ffn_hidden=32))
    box = text.sampling_lab(model, {"a": "hello", "b": "def "})
    first = output_text(box)
    box.controls["prompt"].value = "def "
    assert output_text(box) != first and "def " in output_text(box)
    again = output_text(box)
    box.controls["button"].click()
    assert output_text(box) != again  # a new draw


def test_attention_viewer_and_routing_explorer_draw():
    torch.manual_seed(0)
    model = build_model(ModelConfig(context_length=32, d_model=32, n_layers=2, n_heads=2, ffn_hidden=32, moe=SMALL_MOE))
    viewer = text.attention_viewer(model, "abc")
    first = bytes(viewer.output.value)
    width = int.from_bytes(first[16:20], "big")
    assert viewer.output.layout.width == f"{width}px"  # shown at its pixel size: not stretched, not blurred
    assert all(c.style.description_width == "initial" and c.tooltip for c in (viewer.controls["layer"], viewer.controls["head"]))
    viewer.controls["layer"].value = 1
    assert first.startswith(b"\x89PNG") and bytes(viewer.output.value) != first
    explorer = experts.routing_explorer(model, {"t": "some text"})
    first = bytes(explorer.output.value)
    explorer.controls["n_group"].value = 4
    explorer.controls["capacity_factor"].value = 0.5
    assert bytes(explorer.output.value) != first


def test_balancing_lab_runs_live_and_stops(corpus):
    from course_lib.train import TrainConfig

    config = ModelConfig(context_length=16, d_model=32, n_layers=1, n_heads=2, ffn_hidden=32,
                         moe=dict(n_experts=4, top_k=2, expert_hidden=16))
    lab = balancing.balancing_lab(corpus, model_config=config,
                                train_config=TrainConfig(steps=30, batch_size=4, seq_len=16, eval_every=30, eval_batches=1))
    placeholder = bytes(lab.output.value)
    assert placeholder.startswith(b"\x89PNG")  # a placeholder before the first run, not a broken image
    lab.controls["method"].value = "none"
    assert lab.controls["coefficient"].disabled  # no coefficient to set
    lab.controls["method"].value = "aux loss (alpha)"
    assert not lab.controls["coefficient"].disabled
    lab.controls["run"].click()
    lab.state["thread"].join(timeout=60)
    assert "done: validation loss" in lab.status.value and bytes(lab.output.value).startswith(b"\x89PNG")
    assert not lab.controls["run"].disabled and not lab.controls["method"].disabled  # ready to run again
    assert "MaxVio" in lab.status.value  # the routing recorder ran before the lab's own callback
    long = TrainConfig(steps=100_000, batch_size=4, seq_len=16, eval_every=100_000, eval_batches=1)
    lab = balancing.balancing_lab(corpus, model_config=config, train_config=long)
    lab.controls["run"].click()
    lab.controls["stop"].click()
    lab.state["thread"].join(timeout=60)
    assert not lab.state["thread"].is_alive() and "stopped" in lab.status.value


def test_expert_colouring_follows_the_text():
    torch.manual_seed(0)
    model = build_model(ModelConfig(context_length=32, d_model=32, n_layers=2, n_heads=2, ffn_hidden=32, moe=SMALL_MOE))
    box = experts.expert_colouring(model, {"a": "abc", "b": "12 + 3"})
    first = box.output.value
    assert first.count("layer ") == 2 and "title='expert" in first
    box.controls["pick"].value = "12 + 3"
    assert box.controls["text"].value == "12 + 3" and box.output.value != first


def test_licence_checker_updates_on_every_control():
    box = licences.licence_checker()
    assert "DeepSeek-V4-Pro" in box.output.value and ">yes<" in box.output.value
    box.controls["model"].value = "meta-llama/Llama-3.1-8B"
    box.controls["mau"].value = 1_000_000_000
    assert ">no<" in box.output.value and "700,000,000" in box.output.value
    assert "commercial use" in box.output.value and "commercial_mau" not in box.output.value  # human labels
    assert "[V] verified" in box.output.value  # the confidence marks have a legend
    assert ("1,000,000,000", 1_000_000_000) in box.controls["mau"].options  # counts with separators
    box.controls["publish"].value = True
    assert "must begin with &#x27;Llama&#x27;" in box.output.value
    box.controls["name"].value = "Llama-CourseBot"
    assert "as required" in box.output.value
    box.controls["commercial"].value = box.controls["publish"].value = False
    assert "Tick at least one" in box.output.value
    assert box.controls["mau"].disabled and box.controls["name"].disabled  # nothing to set for an unticked use
