from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib.moe import MoE
from course_lib.numerics import fp4_error_bound, moe_forward_numpy, numpy_weights, quantize_fp4_blockwise
from course_lib.parallel import (backend_for, backend_is_available, check_backend, check_layout, init_process_group,
                                 run_expert_parallel, single_process_reference)
from course_lib.routing import PRESETS


@pytest.mark.parametrize("preset", ["softmax", "mixtral", "deepseek_v3", "deepseek_v4"])
def test_numpy_reference_equals_torch(preset):
    torch.manual_seed(0)
    moe = MoE(16, 8, 2, 12, n_shared=1, router=PRESETS[preset]).eval()
    moe.router.bias[:] = torch.linspace(-0.1, 0.1, 8)
    x = torch.randn(20, 16)
    with torch.no_grad():
        expected = moe(x).numpy()
    assert np.allclose(moe_forward_numpy(x.numpy(), **numpy_weights(moe)), expected, atol=1e-5)


def test_fp4_round_trip_within_the_stated_bound():
    torch.manual_seed(0)
    w = torch.randn(64, 128) * 0.05
    q, scale = quantize_fp4_blockwise(w)
    assert scale.shape == (64, 4)
    assert torch.all((w - q).abs() <= fp4_error_bound(w) + 1e-12)
    values = (q.reshape(64, 4, 32) / scale.unsqueeze(-1)).abs().unique()
    assert set(values.tolist()) <= {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0}
    assert torch.equal(quantize_fp4_blockwise(q)[0], q)  # already representable: unchanged
    w2 = torch.randn(96, 48)
    q2, _ = quantize_fp4_blockwise(w2, dim=0)
    assert torch.all((w2 - q2).abs() <= fp4_error_bound(w2, dim=0) + 1e-12)
    with pytest.raises(ValueError, match="multiple of the block size 32"):
        quantize_fp4_blockwise(torch.randn(3, 33))


@pytest.mark.parametrize("world_size", [2, 4])
def test_expert_parallel_equals_single_process_forward_and_backward(world_size):
    result = run_expert_parallel(world_size=world_size, port=29600 + world_size)
    reference = single_process_reference(world_size=world_size)
    assert torch.allclose(result["y"], reference["y"], atol=1e-6)
    assert torch.allclose(result["x_grad"], reference["x_grad"], atol=1e-6)
    for name, grad in reference["grads"].items():
        assert torch.allclose(result["grads"][name], grad, atol=1e-5), name
    assert all(b > 0 for b in result["bytes_sent"])


def _aborting_spawn(real_spawn, *, write_results_first: list[bool], calls: list[str]):
    """A stand-in for torch.multiprocessing.spawn: per call, run the real workers (or not), then report a SIGABRT."""
    import torch.multiprocessing as mp

    def spawn(fn, args, nprocs, join):
        run_first = write_results_first[len(calls)] if len(calls) < len(write_results_first) else None
        calls.append(args[2])
        if run_first is None:  # past the scripted calls: behave normally
            return real_spawn(fn, args=args, nprocs=nprocs, join=join)
        if run_first:
            real_spawn(fn, args=args, nprocs=nprocs, join=join)
        (Path(args[2]) / "rank0.log").write_text("terminate called after throwing an instance of 'gloo::IoException'")
        raise mp.ProcessExitedException("process 0 terminated with signal SIGABRT", error_index=0, error_pid=1,
                                        exit_code=-6, signal_name="SIGABRT")
    return spawn


def test_expert_parallel_survives_a_transport_abort(monkeypatch):
    import torch.multiprocessing as mp

    reference = single_process_reference(world_size=2)
    real_spawn, calls = mp.spawn, []
    # the abort comes after every rank saved its result (teardown): the results stand, nothing runs twice
    monkeypatch.setattr(mp, "spawn", _aborting_spawn(real_spawn, write_results_first=[True], calls=calls))
    assert torch.allclose(run_expert_parallel(world_size=2, port=29621)["y"], reference["y"], atol=1e-6)
    assert len(calls) == 1
    # the abort comes before any result (connection set-up): the run starts again, once
    calls.clear()
    monkeypatch.setattr(mp, "spawn", _aborting_spawn(real_spawn, write_results_first=[False], calls=calls))
    assert torch.allclose(run_expert_parallel(world_size=2, port=29622)["y"], reference["y"], atol=1e-6)
    assert len(calls) == 2
    # it keeps failing: a clear error after `attempts` runs, with what the aborted rank printed
    calls.clear()
    monkeypatch.setattr(mp, "spawn", _aborting_spawn(real_spawn, write_results_first=[False] * 3, calls=calls))
    with pytest.raises(RuntimeError, match=r"(?s)failed 3 times.*SIGABRT.*gloo::IoException"):
        run_expert_parallel(world_size=2, port=29623, attempts=3)
    assert len(calls) == 3
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        run_expert_parallel(world_size=2, attempts=0)


def test_bad_parallel_settings():
    with pytest.raises(ValueError, match="world_size must be >= 1"):
        check_layout(8, 0)
    with pytest.raises(ValueError, match="not divisible by world_size=3"):
        check_layout(8, 3)
    with pytest.raises(ValueError, match="backend must be one of"):
        init_process_group(0, 1, backend="mpi")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="nccl.*gloo"):
            init_process_group(0, 1, backend="nccl")


@pytest.mark.parametrize("device, backend", [("cpu", "gloo"), ("cuda", "nccl"), ("cuda:3", "nccl"), ("npu", "hccl"),
                                             ("npu:0", "hccl"), ("xpu", "xccl"), (torch.device("cpu"), "gloo")])
def test_backend_follows_the_device_type(device, backend):
    assert backend_for(device) == backend  # decided from the name: no hardware needed


def test_unusable_backends_name_what_they_need():
    with pytest.raises(ValueError, match="no collective backend for device type 'mps'.*gloo"):
        backend_for("mps")
    assert check_backend("gloo") == "gloo"
    needs = {"nccl": "CUDA", "hccl": "torch-npu", "xccl": "XPU build"}  # what init_process_group says is missing
    for backend, package in needs.items():
        if not backend_is_available(backend):
            with pytest.raises(ValueError, match=f"{backend}.*{package}.*backend='gloo'"):
                init_process_group(0, 1, backend=backend)


def test_runs_refuse_backends_that_need_device_placement():
    with pytest.raises(ValueError, match="keep every rank on the CPU.*'gloo'"):
        run_expert_parallel(world_size=2, backend="nccl")
