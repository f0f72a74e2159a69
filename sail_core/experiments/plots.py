"""Plots of experiment results."""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sail_core.io.atomic import write_bytes


def plot_utility(rows: Sequence[dict], subsets: Mapping[str, Sequence[str]], out_dir: str | Path) -> list[Path]:
    """``utility.png`` of every arm, and ``<stem>.png`` of each subset's arms (``analysis.plots``) that
    has rows yet."""
    out_dir = Path(out_dir)
    paths = [plot_trajectories(rows, "utility", out_dir / "utility.png")]
    for stem, arms in subsets.items():
        shown = [r for r in rows if r["arm"] in arms]
        if shown:
            paths.append(plot_trajectories(shown, "utility", out_dir / f"{stem}.png"))
    return paths


def plot_trajectories(rows: Sequence[dict], metric: str, path: str | Path) -> Path:
    """``metric`` across each arm's models (base, round-00, round-01, ...), mean ± sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(r["arm"] for r in rows))
    all_models = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    colours = itertools.cycle(plt.get_cmap("tab10" if len(arms) <= 10 else "tab20").colors)  # up to 20 apart
    for arm, colour in zip(arms, colours):
        models = list(dict.fromkeys(r["model"] for r in rows if r["arm"] == arm))
        values = [[r[metric] for r in rows if r["arm"] == arm and r["model"] == m] for m in models]
        means = np.array([np.mean(v) for v in values])
        sds = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values])
        xs = np.array([all_models.index(m) for m in models])
        ax.plot(xs, means, marker="o", label=arm, color=colour)
        ax.fill_between(xs, means - sds, means + sds, alpha=0.15, color=colour)
    ax.set_xticks(range(len(all_models)), all_models, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_tradeoff(summary: Sequence[dict], x: str, y: str, path: str | Path, label: str = "setting",
                  series: str = "series") -> Path:
    """``y`` against ``x`` (mean ± sd over seeds), one marker per row labelled by ``label``; rows with
    the same ``series`` are joined by a line in order of ``x`` (e.g. fixed K, sequential at several
    confidences)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name in dict.fromkeys(r[series] for r in summary):
        rows = sorted((r for r in summary if r[series] == name), key=lambda r: r[x])
        xs, ys = np.array([r[x] for r in rows]), np.array([r[y] for r in rows])
        sds = np.nan_to_num(np.array([r.get(f"{y}_sd", 0.0) for r in rows], dtype=np.float64))
        ax.errorbar(xs, ys, yerr=sds, marker="o", capsize=3, label=name)
        for row in rows:
            ax.annotate(row[label], (row[x], row[y]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """The figure as a PNG written atomically (an earlier plot of the same name is replaced)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return write_bytes(path, buffer.getvalue(), overwrite=True)
