"""Expert parallelism for real: an MoE layer whose experts are sharded over processes (notebook 06).

Every rank holds the router (replicated) and ``n_experts / world_size`` experts, and routes its own tokens.
Dispatch: each token-expert pair is sent to the rank that owns the expert with one ``all_to_all_single`` (rows,
plus the expert ids and weights); the owner runs its experts; a second ``all_to_all_single`` sends the results
back, where they are combined. The exchange itself is device-agnostic; what changes with the hardware is the
process group's collective library (``backend_for``: gloo on CPUs, NCCL on NVIDIA, RCCL on AMD under the same
name, HCCL on Huawei Ascend NPUs, registered by torch_npu, XCCL on Intel GPUs) and where each rank puts the layer
and its tokens. The course's workers run on the CPU with gloo; placing ranks on accelerators is not done here, so
the runners refuse other backends rather than fail inside a collective. The exchange goes through the
differentiable ``all_to_all_single_autograd`` of torch's functional collectives, so backward works too.

Launch from the command line (one machine, 4 processes; add --nnodes/--node-rank/--rdzv-endpoint for several):
    torchrun --standalone --nproc-per-node=4 -m course_lib.parallel
or from Python/a notebook with ``run_expert_parallel(world_size=4)`` (torch.multiprocessing.spawn).
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import importlib.util

import torch
import torch.distributed as dist

from .hardware import BACKEND_PACKAGES
from .moe import MoE

# the collective library for each device type: what torch.distributed calls the process-group backend
COLLECTIVE_BACKENDS = {"cpu": "gloo", "cuda": "nccl", "npu": "hccl", "xpu": "xccl"}
BACKENDS = tuple(COLLECTIVE_BACKENDS.values())
_BACKEND_DEVICE = {backend: device for device, backend in COLLECTIVE_BACKENDS.items()}


def backend_for(device: str | torch.device) -> str:
    """The process-group backend for ``device`` ("cpu", "cuda:0", "npu"...), decided from its type alone, so it
    can be checked without the hardware. Apple's MPS has no collective library: its processes would use gloo on
    CPU tensors."""
    device_type = device.type if isinstance(device, torch.device) else str(device).split(":")[0].strip().lower()
    if device_type not in COLLECTIVE_BACKENDS:
        raise ValueError(f"no collective backend for device type {device_type!r}; the course knows "
                         f"{', '.join(f'{d} -> {b}' for d, b in COLLECTIVE_BACKENDS.items())} "
                         f"(on a Mac, run the processes on the CPU with gloo)")
    return COLLECTIVE_BACKENDS[device_type]


def backend_is_available(backend: str) -> bool:
    """Whether this PyTorch can open a process group with ``backend`` (and the device it needs is present)."""
    if backend == "gloo":
        return dist.is_available() and dist.is_gloo_available()
    if backend == "nccl":
        return dist.is_available() and dist.is_nccl_available() and torch.cuda.is_available()
    if backend == "xccl":
        return dist.is_available() and getattr(dist, "is_xccl_available", lambda: False)() and torch.xpu.is_available()
    if backend == "hccl":  # torch_npu registers it on import
        return importlib.util.find_spec("torch_npu") is not None and hasattr(torch, "npu") and torch.npu.is_available()
    return False


def check_backend(backend: str) -> str:
    """``backend`` if this machine can use it, else a clear error naming what to install or use instead."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} ({', '.join(f'{b} for {d}' for b, d in _BACKEND_DEVICE.items())}), "
                         f"got {backend!r}")
    if not backend_is_available(backend):
        device = _BACKEND_DEVICE[backend]
        raise ValueError(f"backend {backend!r} is for {device} devices and cannot run here: it needs "
                         f"{BACKEND_PACKAGES.get(device, 'PyTorch with distributed support')}. Use backend='gloo' "
                         f"on the CPU")
    return backend


def check_layout(n_experts: int, world_size: int) -> int:
    """Experts per rank; a clear error when the experts cannot be split evenly."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if n_experts % world_size:
        raise ValueError(f"n_experts={n_experts} is not divisible by world_size={world_size}: every rank must hold "
                         f"the same number of experts; pick a world_size among the divisors of {n_experts}")
    return n_experts // world_size


def _exchange(tensor: torch.Tensor, send_counts: list[int], receive_counts: list[int]) -> torch.Tensor:
    """Differentiable all-to-all: rows [sum(send[:r]), sum(send[:r+1])) go to rank r."""
    from torch.distributed._functional_collectives import all_to_all_single_autograd, wait_tensor

    return wait_tensor(all_to_all_single_autograd(tensor.contiguous(), receive_counts, send_counts, dist.group.WORLD))


def expert_parallel_forward(moe: MoE, x: torch.Tensor, *, rank: int, world_size: int,
                            stats: dict | None = None) -> torch.Tensor:
    """The MoE layer on this rank's tokens ``x`` (tokens, d), with experts sharded over ``world_size`` ranks.

    ``moe`` holds the full layer (same weights on every rank); rank r computes only experts
    [r * E/W, (r + 1) * E/W). stats, if given, receives the bytes this rank sent.
    """
    per_rank = check_layout(moe.n_experts, world_size)
    routing = moe.route(x)
    kept = routing.kept_mask().flatten()
    k = routing.indices.shape[1]
    expert = routing.indices.flatten()[kept]
    token = (torch.arange(kept.numel(), device=x.device) // k)[kept]
    weight = routing.weights.flatten()[kept]
    order = expert.argsort(stable=True)  # sorted by expert, hence by destination rank
    expert, token, weight = expert[order], token[order], weight[order]
    send_counts = torch.bincount(expert // per_rank, minlength=world_size)
    receive_counts = torch.empty_like(send_counts)
    dist.all_to_all_single(receive_counts, send_counts)  # how many rows each rank will send us
    send, receive = send_counts.tolist(), receive_counts.tolist()
    rows = _exchange(x.index_select(0, token), send, receive)  # (received pairs, d)
    their_expert = _exchange(expert.unsqueeze(1).float(), send, receive).squeeze(1).long()
    their_weight = _exchange(weight.unsqueeze(1), send, receive).squeeze(1)
    outputs = torch.zeros_like(rows)
    for local in range(per_rank):
        e = rank * per_rank + local
        mine = torch.nonzero(their_expert == e).flatten()
        if mine.numel():
            out = moe._swiglu(rows.index_select(0, mine), moe.w_gate_up[e], moe.w_down[e], their_weight[mine])
            outputs = outputs.index_add(0, mine, out)
    returned = _exchange(outputs, receive, send)  # results back to the token owners, in our send order
    y = torch.zeros_like(x).index_add(0, token, returned)
    if moe.shared is not None:
        y = y + moe.shared(x)
    if stats is not None:
        row_bytes = x.shape[1] * x.element_size()
        stats["bytes_sent"] = sum(c for r, c in enumerate(send) if r != rank) * (2 * row_bytes + 8)
    return y


def _cpu_only(backend: str) -> None:
    if backend != "gloo":
        raise ValueError(f"the course's expert-parallel runs keep every rank on the CPU, which needs backend 'gloo'; "
                         f"{backend!r} would also need each rank's layer and tokens on its own device, which they "
                         f"do not do")


def init_process_group(rank: int, world_size: int, *, backend: str = "gloo", port: int = 29512) -> None:
    """Join the process group with ``backend`` (``backend_for(device)`` picks it from a device)."""
    check_backend(backend)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(port))
    dist.init_process_group(backend, rank=rank, world_size=world_size)


DEFAULT_MOE = dict(d_model=32, n_experts=8, top_k=2, expert_hidden=16)


def _layer_and_tokens(moe: dict, tokens: int, world_size: int) -> tuple[MoE, torch.Tensor]:
    """The same layer and the same (tokens * world_size, d) inputs in every process, from fixed seeds."""
    torch.manual_seed(0)
    layer = MoE(**moe)
    return layer, torch.randn(tokens * world_size, moe["d_model"], generator=torch.Generator().manual_seed(1))


def _worker(rank: int, world_size: int, settings: dict, out_dir: str) -> None:
    """One process: build the layer from a shared seed, run forward and backward on its share of the tokens."""
    log = os.open(Path(out_dir) / f"rank{rank}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 2)  # C++ messages (gloo, std::terminate) go to fd 2, which a notebook never shows: keep them
    init_process_group(rank, world_size, backend=settings["backend"], port=settings["port"])
    moe, x_all = _layer_and_tokens(settings["moe"], settings["tokens"], world_size)
    x = x_all.chunk(world_size)[rank].clone().requires_grad_(True)
    stats = {}
    y = expert_parallel_forward(moe, x, rank=rank, world_size=world_size, stats=stats)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    grads = {n: p.grad for n, p in moe.named_parameters() if p.grad is not None}
    for name in sorted(grads):  # each rank holds the gradient of its own tokens: sum them, as data parallel does
        dist.all_reduce(grads[name])
    partial = Path(out_dir) / f"rank{rank}.tmp"
    torch.save({"y": y.detach(), "x_grad": x.grad, "grads": grads, "stats": stats}, partial)
    os.replace(partial, partial.with_suffix(".pt"))  # the result file exists only once it is complete
    dist.barrier()
    dist.destroy_process_group()


def _tail(log: Path, chars: int = 1500) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(it printed nothing)"


def run_expert_parallel(*, world_size: int, moe: dict | None = None, tokens: int = 64, backend: str = "gloo",
                        port: int = 29512, attempts: int = 2) -> dict:
    """Spawn ``world_size`` processes; return per-rank outputs, input gradients, summed parameter grads, bytes sent.

    gloo's TCP transport can abort a process (SIGABRT, from its socket thread) while connections open or close:
    twice in the course's first few hundred runs, both on a loaded 2-core machine. The computation itself is
    deterministic, so: if every rank had written its result before the abort, the results stand; otherwise the
    whole run starts again, up to ``attempts`` runs in all. An exception raised in a worker is never retried.
    """
    import torch.multiprocessing as mp

    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    _cpu_only(backend)
    settings = {"moe": moe or DEFAULT_MOE, "tokens": tokens, "backend": backend, "port": port}
    check_layout(settings["moe"]["n_experts"], world_size)
    for attempt in range(1, attempts + 1):
        with tempfile.TemporaryDirectory() as out_dir:
            files = [Path(out_dir) / f"rank{r}.pt" for r in range(world_size)]
            try:
                mp.spawn(_worker, args=(world_size, settings, out_dir), nprocs=world_size, join=True)
            except mp.ProcessExitedException as error:
                if not all(f.exists() for f in files):
                    if attempt < attempts:
                        continue
                    logs = "\n".join(f"--- rank {r} ---\n{_tail(Path(out_dir) / f'rank{r}.log')}" for r in range(world_size))
                    raise RuntimeError(f"the expert-parallel run failed {attempts} times ({error}). If the messages "
                                       f"below mention the address or port, pass another port=.\n{logs}") from None
            results = [torch.load(f, weights_only=True) for f in files]
        return {"y": torch.cat([r["y"] for r in results]), "x_grad": torch.cat([r["x_grad"] for r in results]),
                "grads": results[0]["grads"], "bytes_sent": [r["stats"]["bytes_sent"] for r in results]}


def single_process_reference(*, moe: dict | None = None, tokens: int = 64, world_size: int = 1) -> dict:
    """The same layer, tokens and loss in one process, to compare with run_expert_parallel."""
    layer, x = _layer_and_tokens(moe or DEFAULT_MOE, tokens, world_size)
    x.requires_grad_(True)
    y = torch.cat([layer(chunk) for chunk in x.chunk(world_size)])  # routing (and capacity) per rank's tokens
    ramps = torch.cat([torch.linspace(-1, 1, c.numel()).view_as(c) for c in y.chunk(world_size)])
    (y * ramps).sum().backward()
    return {"y": y.detach(), "x_grad": x.grad, "grads": {n: p.grad for n, p in layer.named_parameters() if p.grad is not None}}


def main() -> None:
    """Entry point for torchrun: every process runs this; RANK and WORLD_SIZE come from the environment."""
    parser = argparse.ArgumentParser(description="Run and check an expert-parallel MoE layer under torchrun.")
    parser.add_argument("--backend", default="gloo", choices=("gloo",), help="the ranks run on the CPU")
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    dist.init_process_group(args.backend)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    moe, x_all = _layer_and_tokens(DEFAULT_MOE, args.tokens, world_size)
    stats = {}
    with torch.no_grad():
        y = expert_parallel_forward(moe, x_all.chunk(world_size)[rank], rank=rank, world_size=world_size, stats=stats)
        expected = moe(x_all.chunk(world_size)[rank])
    error = (y - expected).abs().max().item()
    # one write per line (end included): ranks share one pipe, and a separate newline write can interleave
    print(f"rank {rank}/{world_size}: max difference from the single-process layer {error:.1e}, "
          f"sent {stats['bytes_sent']:,} bytes\n", end="", flush=True)
    dist.barrier()  # tearing down while a peer's collective is still in flight aborts the process (std::terminate)
    dist.destroy_process_group()
    if error > 1e-5:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
