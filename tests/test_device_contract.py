"""The device contract without a GPU: every public function that runs a model puts its inputs on the model's
device (course_lib.hardware.model_device). Each runs here on a model on the ``meta`` device under
``StrictDevices`` (course_lib.device_check), which raises on any operation that mixes devices, as a GPU would."""
import importlib
import inspect
import pkgutil

import pytest
import torch

import course_lib
from course_lib.balancing import BalanceConfig, global_load
from course_lib.cached_training import training_hooks
from course_lib.config import ModelConfig, MoEConfig
from course_lib.device_check import DeviceMismatch, StrictDevices
from course_lib.hardware import model_device, pick_device
from course_lib.memorisation import FactsAndSums, FactsAndSumsConfig
from course_lib.model import build_model
from course_lib.moe import capture_ffn_inputs
from course_lib.routing import RouterConfig
from course_lib.open_weights import same_outputs
from course_lib.serving import decode_trace
from course_lib.specialisation import expert_disabled, expert_usage, shared_experts_disabled
from course_lib.train import TrainConfig, evaluate, train
from course_lib.transformer import attention_map, generate, measured_flops_per_token

# sorted dispatch: grouped_mm's backward has no usable meta kernel (see course_lib.device_check); grouped is checked below
MOE = MoEConfig(n_experts=4, top_k=2, expert_hidden=8, n_shared=1, router=RouterConfig(score="sigmoid", normalize=True),
                dispatch="sorted")
TINY = ModelConfig(context_length=16, d_model=16, n_layers=2, n_heads=2, ffn_hidden=32, moe=MOE, mtp_depth=1)


def _batches(corpus):
    return corpus.eval_batches(n_batches=1, batch_size=2, seq_len=8, seed=0)


def _train(model, corpus):
    config = TrainConfig(steps=2, batch_size=2, seq_len=8, warmup_steps=1, eval_every=2, eval_batches=1, record_every=1)
    losses, callbacks = training_hooks(model, config, BalanceConfig(aux_loss=0.01, bias_update_rate=0.01,
                                                                    sequence_loss=1e-4, z_loss=1e-3))
    train(model, corpus, config, device=model_device(model), losses=losses, callbacks=callbacks, progress=False)


def _disabled_experts(model, corpus):
    with expert_disabled(model, 0), shared_experts_disabled(model):
        evaluate(model, _batches(corpus), corpus.domains)


def _facts_and_sums(model, corpus):
    task = FactsAndSums(FactsAndSumsConfig(n_facts=20, held_out_sums=20))
    task.scores(model)
    task.fact_share_by_expert(model)


def _labs(model, corpus):
    from course_lib.labs.experts import expert_colouring, routing_explorer
    from course_lib.labs.text import attention_viewer, sampling_lab

    expert_colouring(model, {"code": "x = 1"})
    routing_explorer(model, {"code": "x = 1"})
    attention_viewer(model, "x = 1")
    sampling_lab(model, {"code": "x ="})


def _compare_with_transformers():
    pytest.importorskip("transformers")
    from course_lib.deepseek import DeepSeekModel
    from course_lib.hf_format import config_from_hf
    from course_lib.reference import TINY_CONFIGS, compare, reference_model

    for model_type in TINY_CONFIGS:  # the course's DeepSeek models and transformers', both on meta
        ours = DeepSeekModel(config_from_hf({**TINY_CONFIGS[model_type], "model_type": model_type})).to("meta")
        compare(ours, reference_model(model_type).to("meta"), torch.randint(64, (1, 12)))


# every public function that runs a model (or builds tensors for one), and the call that exercises it
RUNS_A_MODEL = {
    "course_lib.moe.capture_ffn_inputs": lambda m, c: capture_ffn_inputs(m, torch.randint(256, (2, 8))),
    "course_lib.balancing.global_load": lambda m, c: global_load(m, _batches(c)),
    "course_lib.specialisation.expert_usage": lambda m, c: expert_usage(m, c, batches=1, batch_size=2, seq_len=8),
    "course_lib.train.evaluate": lambda m, c: evaluate(m, _batches(c), c.domains),
    "course_lib.train.train": _train,
    "course_lib.cached_training.training_hooks": _train,
    "course_lib.balancing.bias_updater": _train,
    "course_lib.specialisation.expert_disabled": _disabled_experts,
    "course_lib.specialisation.shared_experts_disabled": _disabled_experts,
    "course_lib.transformer.attention_map": lambda m, c: attention_map(m, torch.tensor([1, 2, 3]), layer=1),
    "course_lib.transformer.generate": lambda m, c: (generate(m, torch.tensor([1, 2]), max_new_tokens=2),
                                                     generate(m, torch.tensor([1, 2]), max_new_tokens=2, temperature=0.7,
                                                              top_k=5)),
    "course_lib.transformer.measured_flops_per_token": lambda m, c: measured_flops_per_token(m),
    "course_lib.memorisation.FactsAndSums.accuracy": _facts_and_sums,
    "course_lib.memorisation.FactsAndSums.scores": _facts_and_sums,
    "course_lib.memorisation.FactsAndSums.fact_share_by_expert": _facts_and_sums,
    "course_lib.labs.experts.expert_colouring": _labs,
    "course_lib.labs.experts.routing_explorer": _labs,
    "course_lib.labs.text.attention_viewer": _labs,
    "course_lib.labs.text.sampling_lab": _labs,
    "course_lib.serving.decode_trace": lambda m, c: decode_trace(m, torch.tensor([1, 2, 3]), new_tokens=2),
    "course_lib.open_weights.same_outputs": lambda m, c: same_outputs(m, m, torch.tensor([[1, 2, 3]])),
    "course_lib.reference.compare": lambda m, c: _compare_with_transformers(),
}
# public functions that take a model but run none of it, and why the contract does not apply
RUNS_NO_MODEL = {
    "course_lib.hardware.model_device": "the contract itself (tested below)",
    "course_lib.mtp.MTPModule.forward": "a module's forward: the model that calls it passes tensors on its device",
    "course_lib.mhc.HyperConnection.forward": "a module's forward: the model that calls it passes tensors on its device",
    "course_lib.moe.scheduled_moe": "builds a layer from its config (MoEConfig matches the annotation test)",
    "course_lib.transformer.run_blocks": "part of a model's forward: the model passes tensors on its device",
    "course_lib.transformer.mtp_predictions": "part of a model's forward: the model passes tensors on its device",
    "course_lib.checkpoints.state_tensors": "copies the weights to the CPU",
    "course_lib.checkpoints.save_checkpoint": "copies the weights to the CPU",
    "course_lib.checkpoints.load_checkpoint": "load_state_dict copies into the model's own device",
    "course_lib.open_weights.export_release": "copies the weights to the CPU",
    "course_lib.serving.ExpertStore.write": "copies the weights to the CPU",
    "course_lib.transformer.count_parameters": "counts",
    "course_lib.train.make_optimizer": "the optimizer state follows the parameters",
    "course_lib.numerics.numpy_weights": "copies the weights to the CPU (tested below)",
    "course_lib.parallel.expert_parallel_forward": "runs in worker processes; every tensor it builds follows x",
    "course_lib.parallel.run_expert_parallel": "spawns processes on the CPU (gloo)",
    "course_lib.parallel.single_process_reference": "builds its own CPU layer",
}
MODEL_PARAMETERS = ("model", "moe")  # found by name, or by an annotation naming a module type
MODULE_ANNOTATIONS = ("Module", "Transformer", "MoE")


def _takes_a_model(function) -> bool:
    parameters = inspect.signature(function).parameters.values()
    return any(p.name in MODEL_PARAMETERS or any(t in str(p.annotation) for t in MODULE_ANNOTATIONS)
               for p in parameters)


def _public_functions_taking_a_model() -> set[str]:
    found = set()
    for info in pkgutil.walk_packages(course_lib.__path__, "course_lib."):
        if ".maintainer" in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        members = [(f"{module.__name__}.{name}", f) for name, f in inspect.getmembers(module, inspect.isfunction)
                   if f.__module__ == module.__name__ and not name.startswith("_")]
        for class_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__:
                methods = {name: getattr(f, "__func__", f) for name, f in vars(cls).items()}  # static methods too
                members += [(f"{module.__name__}.{class_name}.{name}", f) for name, f in methods.items()
                            if inspect.isfunction(f) and not name.startswith("_")]
        found |= {name for name, f in members if _takes_a_model(f)}
    return found


def test_every_function_that_takes_a_model_is_covered():
    found = _public_functions_taking_a_model()
    assert found - set(RUNS_A_MODEL) - set(RUNS_NO_MODEL) == set(), "add each new function to RUNS_A_MODEL (or RUNS_NO_MODEL)"
    assert set(RUNS_A_MODEL) | set(RUNS_NO_MODEL) <= found, "a listed function no longer exists or no longer takes a model"


def _meta_model(config=TINY):
    torch.manual_seed(0)
    return build_model(config).to("meta")


@pytest.mark.parametrize("name", sorted(RUNS_A_MODEL))
def test_follows_the_model_device(name, corpus):
    config = TINY
    if name.startswith("course_lib.memorisation"):  # trained on bytes of facts and sums: a shorter context is enough
        config = ModelConfig(context_length=16, d_model=16, n_layers=2, n_heads=2, ffn_hidden=32, moe=MOE)
    model = _meta_model(config)
    with StrictDevices() as strict:
        RUNS_A_MODEL[name](model, corpus)
    assert strict.ops_checked > 50  # the model really ran under the check
    assert model_device(model).type == "meta"  # and nothing moved it back to the CPU


def test_grouped_dispatch_follows_the_model_device(corpus):
    import dataclasses

    model = _meta_model(dataclasses.replace(TINY, moe=dataclasses.replace(MOE, dispatch="grouped")))
    with StrictDevices():
        evaluate(model, _batches(corpus), corpus.domains)


def test_the_check_catches_a_forgotten_move():
    model = _meta_model()
    with StrictDevices(), pytest.raises(DeviceMismatch, match="model's device"):
        model(torch.randint(256, (1, 4)))  # CPU inputs into a meta model: plain PyTorch would let this pass
    with StrictDevices():
        model(torch.randint(256, (1, 4)).to(model_device(model)))  # moved: fine


def test_numpy_weights_copy_to_the_cpu():
    from course_lib.moe import MoE
    from course_lib.numerics import numpy_weights

    layer = MoE(8, 4, 2, 8, n_shared=1).to("meta")
    with StrictDevices():
        weights = numpy_weights(layer)
    assert weights["w_down"].shape == (4, 8, 8)


def test_model_device():
    model = build_model(ModelConfig(context_length=8, d_model=8, n_layers=1, n_heads=1, ffn_hidden=8))
    assert model_device(model) == torch.device("cpu")
    model.blocks[0].to("meta")
    with pytest.raises(ValueError, match="several devices.*cpu, meta.*model.to"):
        model_device(model)
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")


def test_missing_backend_package_is_named(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch_npu" else real_find_spec(name, *a))
    if not hasattr(torch, "npu"):
        with pytest.raises(ValueError, match="torch_npu.*pip install torch-npu.*CANN"):
            pick_device("npu")
        with pytest.raises(ValueError, match="torch-npu"):
            pick_device("npu:1")
    if not torch.xpu.is_available():
        with pytest.raises(ValueError, match="not available.*XPU build"):
            pick_device("xpu")


def test_a_broken_backend_install_says_what_to_set_up(monkeypatch):
    import importlib
    import importlib.util

    if hasattr(torch, "npu"):
        pytest.skip("torch_npu is really imported here")
    real_find_spec, real_import = importlib.util.find_spec, importlib.import_module
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "torch_npu" else real_find_spec(name, *a))

    def failing_import(name, *args):
        if name == "torch_npu":
            raise OSError("libhccl.so: cannot open shared object file")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", failing_import)
    with pytest.raises(ValueError, match="installed but failed to import.*libhccl.*set_env.sh"):
        pick_device("npu")
