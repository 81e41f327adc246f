"""Speed of the course MoE layer against a dense SwiGLU FFN with the same active FLOPs per token, and against
the transformers library's Mixtral and DeepSeek-V3 MoE blocks (every experts implementation it runs on CPU).

    python benchmarks/moe_speed.py                  # both configs, 4096 and 256 tokens, fp32, 2 threads
    python benchmarks/moe_speed.py --repeats 5      # quicker, noisier

All candidates run in one process, interleaved (one timing of each in turn, repeated), and we report medians:
the machine is shared and noisy, so only side-by-side ratios mean much. Install the extra with
``pip install -e .[bench]`` to include transformers. Notebook 06 and the README quote its output.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from course_lib.moe import MoE, moe_cost
from course_lib.routing import RouterConfig
from course_lib.transformer import SwiGLU


@dataclass(frozen=True)
class BenchConfig:
    name: str
    d_model: int
    n_experts: int
    top_k: int
    expert_hidden: int
    n_shared: int
    router: RouterConfig


CONFIGS = (
    BenchConfig("A", 256, 8, 2, 512, 0, RouterConfig(normalize=True)),  # Mixtral-like: softmax, renormalised
    BenchConfig("B", 256, 64, 6, 128, 1, RouterConfig(score="sigmoid", normalize=True, routed_scaling=2.5)),  # V3-like
)
TARGETS = {"A": 1.05, "B": 1.25}  # forward+backward time / dense, at 4096 tokens


def matmul_peak(threads: int) -> float:
    """Measured fp32 matmul FLOP/s on this machine (median of 5), the ceiling for the share column."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / statistics.median(times)


def transformers_blocks(config: BenchConfig) -> dict[str, torch.nn.Module]:
    """The transformers MoE block matching ``config``, once per experts implementation; {} if not installed."""
    try:
        import transformers
    except ImportError:
        return {}
    blocks = {}
    for implementation in ("eager", "batched_mm", "grouped_mm"):
        if config.name == "A":
            from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
            hf_config = transformers.MixtralConfig(hidden_size=config.d_model, intermediate_size=config.expert_hidden,
                                                   num_local_experts=config.n_experts, num_experts_per_tok=config.top_k)
            block_class = MixtralSparseMoeBlock
        else:
            from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE
            hf_config = transformers.DeepseekV3Config(
                hidden_size=config.d_model, moe_intermediate_size=config.expert_hidden, n_routed_experts=config.n_experts,
                num_experts_per_tok=config.top_k, n_shared_experts=config.n_shared, n_group=1, topk_group=1,
                routed_scaling_factor=2.5, norm_topk_prob=True)
            block_class = DeepseekV3MoE
        hf_config._experts_implementation = implementation
        torch.manual_seed(0)
        block = block_class(hf_config)
        for parameter in block.parameters():
            torch.nn.init.normal_(parameter, std=0.02)
        blocks[f"transformers {block_class.__name__} {implementation}"] = block
    return blocks


class SeparateGateUpSwiGLU(torch.nn.Module):
    """The same dense FFN with gate and up as two matmuls (as transformers writes it): its backward has no
    concatenation of the two gradients, but two matmuls instead of one; on this CPU either layout can be the
    faster by a few percent. A second baseline, so a ratio to dense does not flatter the MoE."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate = torch.nn.Linear(d_model, hidden, bias=False)
        self.up = torch.nn.Linear(d_model, hidden, bias=False)
        self.down = torch.nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.silu(self.gate(x)) * self.up(x))


def candidates(config: BenchConfig, *, with_transformers: bool = True) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    active_hidden = (config.top_k + config.n_shared) * config.expert_hidden
    modules = {"dense SwiGLU (same active FLOPs)": SwiGLU(config.d_model, active_hidden),
               "dense SwiGLU, gate and up separate": SeparateGateUpSwiGLU(config.d_model, active_hidden)}
    for dispatch in ("sorted", "grouped"):
        torch.manual_seed(0)
        modules[f"course MoE {dispatch}"] = MoE(config.d_model, config.n_experts, config.top_k, config.expert_hidden,
                                                n_shared=config.n_shared, router=config.router, dispatch=dispatch)
    if with_transformers:
        modules.update(transformers_blocks(config))
    return modules


def time_once(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(config: BenchConfig, tokens: int, repeats: int, peak: float, *, with_transformers: bool = True) -> list[dict]:
    modules = candidates(config, with_transformers=with_transformers)
    x = torch.randn(1, tokens, config.d_model)
    upstream = torch.randn(1, tokens, config.d_model)  # a real loss: autograd never sees a stride-0 gradient

    def forward(module):
        with torch.no_grad():
            module(x)

    def forward_backward(module):
        inputs = x.clone().requires_grad_(True)
        (module(inputs) * upstream).sum().backward()
        module.zero_grad(set_to_none=True)

    timings = {(name, mode): [] for name in modules for mode in ("fwd", "fwd+bwd")}
    warm_up = {name: time_once(lambda: forward(module)) for name, module in modules.items()}
    dense_name = next(iter(modules))
    slow = {name for name, seconds in warm_up.items() if seconds > 20 * warm_up[dense_name]}
    for name in slow:  # over 20x dense (transformers' batched_mm on CPU): one timing of each tells enough
        timings[name, "fwd"].append(time_once(lambda: forward(modules[name])))
        timings[name, "fwd+bwd"].append(time_once(lambda: forward_backward(modules[name])))
    for name, module in modules.items():
        if name not in slow:
            forward_backward(module)  # warm-up
    for _ in range(repeats):
        for name, module in modules.items():
            if name in slow:
                continue
            timings[name, "fwd"].append(time_once(lambda: forward(module)))
            timings[name, "fwd+bwd"].append(time_once(lambda: forward_backward(module)))
    active_flops = moe_cost(d_model=config.d_model, n_experts=config.n_experts, top_k=config.top_k,
                            expert_hidden=config.expert_hidden, n_shared=config.n_shared).flops_per_token * tokens
    rows = []
    for mode, flop_multiple in (("fwd", 1), ("fwd+bwd", 3)):
        dense = statistics.median(timings["dense SwiGLU (same active FLOPs)", mode])
        for name in modules:
            seconds = statistics.median(timings[name, mode])
            rows.append(dict(config=config.name, tokens=tokens, mode=mode,
                             name=name + (" (1 run)" if len(timings[name, mode]) == 1 else ""), ms=1e3 * seconds,
                             tokens_per_s=tokens / seconds, vs_dense=seconds / dense,
                             peak_share=flop_multiple * active_flops / seconds / peak))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096, 256])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", nargs="+", default=[c.name for c in CONFIGS], choices=[c.name for c in CONFIGS])
    parser.add_argument("--no-transformers", action="store_true", help="skip the transformers blocks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, fp32; measured matmul peak {peak / 1e9:.0f} GFLOP/s; "
          f"medians of {args.repeats} interleaved runs")
    verdicts = []
    for config in (c for c in CONFIGS if c.name in args.configs):
        for tokens in args.tokens:
            rows = run(config, tokens, args.repeats, peak, with_transformers=not args.no_transformers)
            print(f"\nconfig {config.name}: d={config.d_model}, {config.n_experts} experts, top-{config.top_k}, "
                  f"expert hidden {config.expert_hidden}, {config.n_shared} shared; {tokens} tokens")
            print(f"{'mode':8s} {'implementation':55s} {'ms':>8s} {'tokens/s':>10s} {'x dense':>8s} {'% peak':>7s}")
            for row in rows:
                print(f"{row['mode']:8s} {row['name']:55s} {row['ms']:8.2f} {row['tokens_per_s']:10.0f} "
                      f"{row['vs_dense']:8.2f} {100 * row['peak_share']:6.0f}%")
            if tokens == 4096:
                best = min((r for r in rows if r["mode"] == "fwd+bwd" and r["name"].startswith("course")),
                           key=lambda r: r["vs_dense"])
                others = [r for r in rows if r["mode"] == "fwd+bwd" and r["name"].startswith("transformers")]
                beats = all(best["ms"] < r["ms"] for r in others)
                fastest_dense = min(r["ms"] for r in rows if r["mode"] == "fwd+bwd" and r["name"].startswith("dense"))
                verdicts.append(f"config {config.name}: best course MoE ({best['name']}) fwd+bwd = {best['vs_dense']:.2f}x "
                                f"the course's dense FFN, {best['ms'] / fastest_dense:.2f}x the faster dense layout "
                                f"(target <= {TARGETS[config.name]}): "
                                f"{'met' if best['ms'] / fastest_dense <= TARGETS[config.name] else 'NOT met'}; "
                                f"faster than every transformers implementation: "
                                f"{'yes' if beats and others else 'not measured' if not others else 'NO'}")
    print("\n" + "\n".join(verdicts))


if __name__ == "__main__":
    main()
