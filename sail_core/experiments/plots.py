"""Plots of experiment results."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sail_core.io.atomic import write_bytes


def plot_trajectories(rows: Sequence[dict], metric: str, path: str | Path) -> Path:
    """``metric`` across each arm's models (base, round-00, round-01, ...), mean ± sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(r["arm"] for r in rows))
    all_models = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm in arms:
        models = list(dict.fromkeys(r["model"] for r in rows if r["arm"] == arm))
        values = [[r[metric] for r in rows if r["arm"] == arm and r["model"] == m] for m in models]
        means = np.array([np.mean(v) for v in values])
        sds = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values])
        xs = np.array([all_models.index(m) for m in models])
        ax.plot(xs, means, marker="o", label=arm)
        ax.fill_between(xs, means - sds, means + sds, alpha=0.15)
    ax.set_xticks(range(len(all_models)), all_models, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return write_bytes(path, buffer.getvalue(), overwrite=True)
