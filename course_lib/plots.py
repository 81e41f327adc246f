"""Plotting helpers shared by the notebooks: loss curves, where parameters and FLOPs go, attention maps."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def smooth(values: list[float], window: int = 20) -> np.ndarray:
    """Trailing moving average (the first points average over what exists so far)."""
    values = np.asarray(values, dtype=float)
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (cumulative[1:] - cumulative[np.maximum(0, np.arange(1, len(values) + 1) - window)]) / counts


def plot_history(history, *, baseline: float | None = None, label: str = "", ax=None):
    """Training loss (smoothed) and validation loss against steps; optional horizontal baseline."""
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    ax.plot(history.step, smooth(history.train_loss), label=f"train {label}".strip(), alpha=0.8)
    ax.plot(history.eval_step, history.val_loss, "o-", label=f"validation {label}".strip())
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", label=f"unigram baseline ({baseline:.2f})")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per byte)")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def plot_shares(parts: dict[str, float], *, title: str, ax=None):
    """Horizontal bars of each component's share of a total, labelled in percent."""
    ax = ax or plt.subplots(figsize=(6, 0.5 + 0.45 * len(parts)))[1]
    total = sum(parts.values())
    names = list(parts)
    shares = [100 * parts[n] / total for n in names]
    ax.barh(names, shares, color="tab:blue")
    for y, share in enumerate(shares):
        ax.text(share + 0.5, y, f"{share:.1f}%", va="center")
    ax.set_xlim(0, max(shares) * 1.2)
    ax.set_xlabel("% of total")
    ax.set_title(title)
    ax.invert_yaxis()
    return ax


def plot_attention(weights: np.ndarray, labels: list[str], *, title: str = "", ax=None):
    """A (seq, seq) attention map: row = the position that looks, column = the position looked at."""
    ax = ax or plt.subplots(figsize=(5, 5))[1]
    ax.imshow(weights, cmap="viridis", vmin=0, vmax=max(float(weights.max()), 1e-9))
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("attends to (key)")
    ax.set_ylabel("query position")
    ax.set_title(title)
    return ax
