"""Serving an MoE on a memory budget: every expert in slow memory, a few per layer in fast memory (notebook 10).

A server that cannot hold all experts in fast memory (GPU memory; on a laptop, the RAM a process may use) keeps
them in slow memory (host memory, or disk) and caches ``capacity`` experts per MoE layer. Whether that works depends
on the routing: which experts consecutive tokens ask for. Here slow memory is one safetensors file, memory-mapped
(``ExpertStore``): reading an expert copies it out of the page cache or off the disk. This module records the
routing of a trained model while it generates (``decode_trace``), replays it through cache policies (``simulate``:
LRU, LFU, and Belady's clairvoyant optimum, a bound no policy can beat), times the expert part of decoding through
a real cache (``time_expert_decoding``), and simulates DeepSeek-V3's redundant experts on the traces
(``place_experts``, V3 report §3.4.1).
"""
from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from .hardware import model_device

POLICIES = ("lru", "lfu", "belady")


@dataclass
class Trace:
    """The experts that each generated token chose, per MoE layer."""
    experts: torch.Tensor  # (steps, layers, k) long
    n_experts: int

    def load(self) -> torch.Tensor:
        """(layers, n_experts): how often each expert was chosen."""
        steps, layers, k = self.experts.shape
        return torch.stack([torch.bincount(self.experts[:, layer].flatten(), minlength=self.n_experts)
                            for layer in range(layers)])

    def split(self, step: int) -> tuple["Trace", "Trace"]:
        """The trace before and from ``step``: statistics of the past, traffic of the future."""
        return Trace(self.experts[:step], self.n_experts), Trace(self.experts[step:], self.n_experts)


@torch.no_grad()
def decode_trace(model: nn.Module, prompt: torch.Tensor, *, new_tokens: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, Trace]:
    """Sample ``new_tokens`` after the 1-D ``prompt`` and record each new token's experts in every MoE layer.

    Returns (all tokens, Trace). Sampling (temperature 1) with ``generator`` keeps it reproducible."""
    moe_layers = model.moe_layers()
    if not moe_layers:
        raise ValueError("the model has no MoE layer: there is no routing to trace")
    if new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
    was_training = model.training
    model.eval()
    tokens = prompt.to(model_device(model))
    steps = []
    try:
        for _ in range(new_tokens):
            output = model(tokens[-model.config.context_length:][None], return_aux=True)
            steps.append(torch.stack([routing.indices[-1] for routing in output.routing]))  # (layers, k): newest token
            probs = output.logits[0, -1].softmax(-1).cpu()
            tokens = torch.cat([tokens, torch.multinomial(probs, 1, generator=generator).to(tokens.device)])
    finally:
        model.train(was_training)
    return tokens.cpu(), Trace(torch.stack(steps).cpu(), moe_layers[0].n_experts)  # (steps, layers, k)


# ---- slow memory and fast memory ---------------------------------------------------------------------------

class ExpertStore:
    """Slow memory: the routed experts of every MoE layer in one safetensors file, memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._handle = safe_open(str(self.path), framework="pt")  # maps the file; reads copy on demand
        self.reads = 0

    @staticmethod
    def write(model: nn.Module, path: str | Path) -> "ExpertStore":
        tensors = {}
        for layer, moe in enumerate(model.moe_layers()):
            for expert in range(moe.n_experts):
                tensors[f"layers.{layer}.experts.{expert}.w_gate_up"] = moe.w_gate_up[expert].detach().cpu().contiguous()
                tensors[f"layers.{layer}.experts.{expert}.w_down"] = moe.w_down[expert].detach().cpu().contiguous()
        save_file(tensors, str(path))
        return ExpertStore(path)

    def read(self, layer: int, expert: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.reads += 1
        prefix = f"layers.{layer}.experts.{expert}"
        return self._handle.get_tensor(f"{prefix}.w_gate_up"), self._handle.get_tensor(f"{prefix}.w_down")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / max(1, self.hits + self.misses)


class ExpertCache:
    """Fast memory for ``capacity`` experts per layer, filled on demand.

    policy: "lru" (evict the least recently used), "lfu" (the least often used so far; ties: least recent), or
    "belady" (the one needed again furthest in the future: needs ``future``, the trace being replayed).
    A token's ``top_k`` experts are combined in one step, so they must all be resident together: a capacity
    below top_k is an error. store: where misses are read from (None: count only).
    """

    def __init__(self, *, n_layers: int, capacity: int, top_k: int, policy: str = "lru",
                 store: ExpertStore | None = None, future: Trace | None = None):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if capacity < top_k:
            raise ValueError(f"an expert cache of {capacity} per layer cannot hold the {top_k} experts one token "
                             f"uses at once: give it at least top_k = {top_k} slots")
        if policy == "belady" and future is None:
            raise ValueError("policy 'belady' needs the future: pass future=<the Trace being replayed>")
        self.capacity, self.policy, self.store = capacity, policy, store
        self.resident: list[OrderedDict] = [OrderedDict() for _ in range(n_layers)]  # expert -> weights, LRU order
        self.uses = [dict() for _ in range(n_layers)]  # expert -> times requested (for LFU)
        self.stats = CacheStats()
        self._next_uses = None
        if future is not None:  # per layer: expert -> the steps that use it, for Belady's rule
            self._next_uses = [{} for _ in range(n_layers)]
            for step, row in enumerate(future.experts.tolist()):
                for layer, experts in enumerate(row):
                    for expert in experts:
                        self._next_uses[layer].setdefault(expert, []).append(step)

    def fetch(self, layer: int, experts: list[int], *, step: int) -> list:
        """The weights of ``experts`` (one token's choice) for ``layer`` at decode ``step``, loading misses."""
        resident = self.resident[layer]
        out = []
        for expert in experts:
            self.uses[layer][expert] = self.uses[layer].get(expert, 0) + 1
            if expert in resident:
                self.stats.hits += 1
                resident.move_to_end(expert)
            else:
                self.stats.misses += 1
                if len(resident) >= self.capacity:
                    del resident[self._victim(layer, pinned=set(experts), step=step)]
                resident[expert] = self.store.read(layer, expert) if self.store is not None else None
            out.append(resident[expert])
        return out

    def _victim(self, layer: int, *, pinned: set[int], step: int) -> int:
        candidates = [e for e in self.resident[layer] if e not in pinned]  # in LRU order, least recent first
        if self.policy == "lru":
            return candidates[0]
        if self.policy == "lfu":
            return min(candidates, key=lambda e: self.uses[layer][e])  # min keeps the first (least recent) of ties
        def next_use(expert: int) -> float:
            steps = self._next_uses[layer].get(expert, [])
            i = bisect.bisect_right(steps, step)
            return steps[i] if i < len(steps) else float("inf")
        return max(candidates, key=next_use)


def replay(trace: Trace, *, capacity: int, policy: str, store: ExpertStore | None = None):
    """Replay ``trace`` through a new cache of ``capacity`` experts per layer, yielding each step's fetched
    weights (None without a store); the cache's ``stats`` count hits and misses as it goes."""
    steps, layers, k = trace.experts.shape
    cache = ExpertCache(n_layers=layers, capacity=capacity, top_k=k, policy=policy, store=store,
                        future=trace if policy == "belady" else None)
    for step, row in enumerate(trace.experts.tolist()):
        for layer, experts in enumerate(row):
            yield cache.fetch(layer, experts, step=step), cache.stats


def simulate(trace: Trace, *, capacity: int, policy: str) -> CacheStats:
    """Replay ``trace`` through a cache of ``capacity`` experts per layer; return hits and misses."""
    stats = CacheStats()
    for _, stats in replay(trace, capacity=capacity, policy=policy):
        pass
    return stats


def time_expert_decoding(store: ExpertStore, trace: Trace, *, capacity: int, policy: str,
                         d_model: int) -> tuple[float, CacheStats]:
    """Seconds per generated token spent on the routed experts (fetching through the cache, then running them
    on one token's hidden state), and the cache statistics. Attention, router and shared experts cost the same
    under every policy and are left out."""
    x = torch.randn(1, d_model, generator=torch.Generator().manual_seed(0))  # (1 token, d_model)
    stats = CacheStats()
    start = time.perf_counter()
    for weights, stats in replay(trace, capacity=capacity, policy=policy, store=store):
        for w_gate_up, w_down in weights:
            gate, up = F.linear(x, w_gate_up).chunk(2, dim=-1)  # (1, 2h) -> two (1, h)
            F.linear(F.silu(gate) * up, w_down)  # (1, d_model)
    return (time.perf_counter() - start) / trace.experts.shape[0], stats


# ---- redundant experts (DeepSeek-V3 §3.4.1) ---------------------------------------------------------------

def copy_order(load, copies: int, *, max_copies: int | None = None) -> list[int]:
    """The expert each of ``copies`` extra copies goes to, in turn: the highest load per copy so far (EPLB's
    replication step), never beyond ``max_copies`` copies of one expert."""
    count, chosen = [1] * len(load), []
    for _ in range(copies):
        allowed = [e for e in range(len(load)) if max_copies is None or count[e] < max_copies]
        expert = max(allowed, key=lambda e: float(load[e]) / count[e])
        count[expert] += 1
        chosen.append(expert)
    return chosen


@dataclass
class Placement:
    devices: list[list[tuple[int, float]]]  # per device: (expert, share of its load) for each hosted replica
    device_load: list[float]

    @property
    def imbalance(self) -> float:
        """Busiest device's load over the mean: 1 is perfect; every device waits for the busiest."""
        return max(self.device_load) / (sum(self.device_load) / len(self.device_load))

    def imbalance_for(self, load: torch.Tensor) -> float:
        """The imbalance this placement gives another load (the traffic after the statistics it was built from):
        each expert's tokens are split equally between its copies."""
        copies = {}
        for hosted in self.devices:
            for expert, _ in hosted:
                copies[expert] = copies.get(expert, 0) + 1
        device_load = [sum(float(load[e]) / copies[e] for e, _ in hosted) for hosted in self.devices]
        return max(device_load) / (sum(device_load) / len(device_load))


def place_experts(load: torch.Tensor, *, devices: int, redundant: int = 0, rearrange: bool = True) -> Placement:
    """Put ``len(load)`` experts, plus ``redundant`` extra replicas of the busiest, on ``devices`` devices.

    The two greedy steps of DeepSeek's EPLB global policy (github.com/deepseek-ai/EPLB), without its node and group
    levels, and with two differences: at most one copy of an expert per device, and a device never holds two copies
    of one expert (EPLB has neither rule).

    Replicas: each extra copy goes to the expert with the highest load per copy (at most one copy per device);
    copies share its load equally.
    rearrange: pack the heaviest copies first onto the least-loaded device with a free slot (as V3 rearranges
    experts by observed load); otherwise experts stay in order, E/devices per device, and no replicas.
    Every device gets the same number of slots: (experts + redundant) / devices."""
    n_experts = len(load)
    if redundant > n_experts * (devices - 1):
        raise ValueError(f"{redundant} redundant copies is more than {n_experts} experts can take with at most one "
                         f"copy per device on {devices} devices ({n_experts * (devices - 1)})")
    if (n_experts + redundant) % devices:
        raise ValueError(f"{n_experts} experts + {redundant} redundant copies do not split evenly over {devices} devices")
    if not rearrange:
        if redundant:
            raise ValueError("redundant copies need rearrange=True: where a copy goes is the rearrangement")
        per = n_experts // devices
        hosted = [[(e, float(load[e])) for e in range(d * per, (d + 1) * per)] for d in range(devices)]
        return Placement(hosted, [sum(w for _, w in h) for h in hosted])
    copies = [1] * n_experts
    for expert in copy_order(load, redundant, max_copies=devices):  # more per device would sit idle side by side
        copies[expert] += 1
    replicas = sorted(((float(load[e]) / copies[e], e) for e in range(n_experts) for _ in range(copies[e])), reverse=True)
    slots = (n_experts + redundant) // devices
    hosted, device_load = [[] for _ in range(devices)], [0.0] * devices
    for share, expert in replicas:  # a device never holds two copies of one expert (they would share its work)
        free = [d for d in range(devices) if len(hosted[d]) < slots]
        distinct = [d for d in free if expert not in {e for e, _ in hosted[d]}] or free
        device = min(distinct, key=lambda d: device_load[d])
        hosted[device].append((expert, share))
        device_load[device] += share
    return Placement(hosted, device_load)
