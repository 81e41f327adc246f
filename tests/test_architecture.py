"""The seams between modules: imports go one way, the model returns what it computed, runs are named once."""
import dataclasses
from pathlib import Path

import pytest
import torch

from course_lib.cached_training import course_imports
from course_lib.config import ModelConfig, MoEConfig
from course_lib.experiments import EXPERIMENTS, get_experiment
from course_lib.model import build_model
from course_lib.moe import STANDARD_MOE
from course_lib.transformer import Transformer

LIBRARY = Path(__file__).resolve().parent.parent / "course_lib"


def imports_of(module: str) -> set[str]:
    return course_imports(LIBRARY / f"{module}.py")


@pytest.mark.parametrize("module, forbidden", [
    ("routing", {"config", "transformer", "moe", "mtp", "model"}),
    ("config", {"transformer", "moe", "mtp", "model"}),
    ("transformer", {"moe", "mtp", "model", "balancing"}),
    ("moe", {"mtp", "model"}),
    ("mtp", {"moe", "model"}),
    ("train", {"balancing", "moe", "mtp", "model", "experiments"}),
])
def test_the_parts_import_one_way(module, forbidden):
    assert not imports_of(module) & forbidden, f"{module} imports {imports_of(module) & forbidden}"


def test_no_module_reads_another_modules_last_call():
    for path in LIBRARY.rglob("*.py"):
        text = path.read_text()
        for attribute in ("last_routing", "last_hidden"):
            assert attribute not in text, f"{path.name} uses {attribute}"


def test_moe_settings_are_typed_and_round_trip_through_json():
    config = ModelConfig(moe=dict(n_experts=4, top_k=2, expert_hidden=8, router=dict(score="sigmoid")))
    assert isinstance(config.moe, MoEConfig) and config.moe.router.score == "sigmoid"
    assert ModelConfig(**config.to_dict()) == config
    with pytest.raises(TypeError, match="expert_count"):
        ModelConfig(moe=dict(n_experts=4, top_k=2, expert_hidden=8, expert_count=3))


def test_a_moe_config_needs_the_builder():
    with pytest.raises(ValueError, match="build_model"):
        Transformer(ModelConfig(moe=STANDARD_MOE))
    with pytest.raises(ValueError, match="build_model"):
        Transformer(ModelConfig(mtp_depth=1))


def test_the_model_returns_routing_and_hidden_states_for_every_moe_layer():
    config = ModelConfig(context_length=16, d_model=32, n_layers=3, n_heads=2, ffn_hidden=32,
                         moe=dataclasses.replace(STANDARD_MOE, expert_hidden=8, first_dense_layers=1))
    torch.manual_seed(0)
    model = build_model(config)
    inputs = torch.randint(256, (2, 16))
    output = model(inputs, return_aux=True)
    assert len(model.moe_layers()) == len(output.routing) == 2  # the first block is dense
    assert len(output.hidden_states) == 4 and all(h.shape == (2, 16, 32) for h in output.hidden_states)
    assert torch.equal(output.logits, model(inputs))
    assert all(r.indices.shape == (32, 2) for r in output.routing)


def test_registered_experiments_are_named_once_and_found_by_name():
    assert all(name == experiment.name for name, experiment in EXPERIMENTS.items())
    with pytest.raises(KeyError, match="'moe_fine_shared'"):
        get_experiment("moe_fine_shard")
    assert get_experiment("balancing", balance=None).balance is None and EXPERIMENTS["balancing"].balance is not None


def test_runs_compared_in_notebook_08_train_alike_in_workshop_mode(monkeypatch):
    monkeypatch.setenv("COURSE_WORKSHOP", "1")
    steps = {name: get_experiment(name).train_config().steps for name in ("moe_fine_shared", "mini_v4_mtp", "mini_v4")}
    assert len(set(steps.values())) == 1, steps
    assert get_experiment("dense").train_config().steps < get_experiment("dense").train.steps  # others do shorten
