"""A run's results across iterations: the metrics table, a plot per metric, and image grids side by side."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from sail_core.config import SailConfig
from sail_core.errors import InputError
from sail_core.images import encode_png
from sail_core.io.atomic import write_bytes, write_text
from sail_core.io.tables import read_table, write_table
from sail_core.run.bookkeeping import manifest
from sail_core.run.layout import RunLayout, check_name
from sail_core.run.lineage import ModelRef
from sail_core.run.records import EvalRecord

DETAIL_SEPARATOR = "."
"""A metric named ``<group>.<name>`` is a detail (e.g. the world's ``attribute.position``): it goes in
the detail table, not in the headline table or the plots."""


def _score_names(records: Sequence[EvalRecord]) -> list[str]:
    """The per-image scores (no CI, category or win-rate entries), in first-seen order."""
    names: list[str] = []
    for record in records:
        for key in record.metrics:
            if not key.endswith(("_ci95", "_win_rate")) and "@" not in key and key not in names:
                names.append(key)
    return names


def metric_names(records: Sequence[EvalRecord]) -> list[str]:
    """Headline metrics, in first-seen order."""
    return [n for n in _score_names(records) if DETAIL_SEPARATOR not in n]


def detail_names(records: Sequence[EvalRecord]) -> list[str]:
    """Detail metrics (``<group>.<name>``), in first-seen order."""
    return [n for n in _score_names(records) if DETAIL_SEPARATOR in n]


def iteration_rows(records: Sequence[EvalRecord]) -> list[dict[str, float | str]]:
    return [{"model": r.label, **r.metrics} for r in records]


def format_table(records: Sequence[EvalRecord], metrics: Sequence[str] | None = None) -> str:
    """A plain-text table: one row per model, ``mean ± ci95`` per metric and the win rate against the
    base; below it, when the scorers report details and no metrics are named, a table of their means."""
    headline = list(metrics or metric_names(records))
    headers = ["model"] + headline + [f"win({m})" for m in headline[:1]]
    rows = []
    for r in records:
        cells = [r.label] + [_mean_ci(r, m) for m in headline]
        win = r.metrics.get(f"{headline[0]}_win_rate") if headline else None
        cells.append("-" if win is None else f"{win:.3f}")
        rows.append(cells)
    table = _text_table(headers, rows)
    details = [] if metrics else detail_names(records)
    if not details:
        return table
    groups = list(dict.fromkeys(d.split(DETAIL_SEPARATOR, 1)[0] for d in details))
    headers, keys = ["model"], [None]
    for group in groups:
        members = [d for d in details if d.split(DETAIL_SEPARATOR, 1)[0] == group]
        headers += ["|", f"{group}:"] + [m.split(DETAIL_SEPARATOR, 1)[1] for m in members]
        keys += ["|", ""] + members
    rows = [[r.label] + [k if k in ("|", "") else (f"{r.metrics[k]:.3f}" if k in r.metrics else "-") for k in keys[1:]]
            for r in records]
    return "\n".join([table, "", "details (each the mean over the images it applies to):", _text_table(headers, rows)])


def _mean_ci(record: EvalRecord, metric: str) -> str:
    value = record.metrics.get(metric)
    if value is None:
        return "-"
    return f"{value:.4f} ± {record.metrics.get(metric + '_ci95', float('nan')):.4f}"


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def write_metrics(records: Sequence[EvalRecord], path: str | Path) -> Path:
    rows = iteration_rows(records)
    keys = sorted({k for row in rows for k in row} - {"model"})
    table = pa.table({"model": [row["model"] for row in rows],
                      **{k: [row.get(k) for row in rows] for k in keys}})
    return write_table(path, table, overwrite=True)


def plot_metrics(records: Sequence[EvalRecord], path: str | Path, metrics: Sequence[str] | None = None) -> Path:
    """One panel per metric: mean with its 95% CI across the models in order (base, iter 0, rounds...)."""
    return plot_metric_grid({"": records}, path, metrics)


def plot_metric_grid(groups: Mapping[str, Sequence[EvalRecord]], path: str | Path,
                     metrics: Sequence[str] | None = None) -> Path:
    """A row of panels per group (e.g. a prompt set), one panel per metric: mean with its 95% CI
    across the group's models in order. A model without the metric leaves a gap in its panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(metrics or metric_names([r for records in groups.values() for r in records]))
    if not metrics or not groups:
        raise ValueError("no metrics to plot")
    fig, axes = plt.subplots(len(groups), len(metrics), figsize=(3.6 * len(metrics), 3.2 * len(groups)),
                             squeeze=False)
    for row, (group, records) in zip(axes, groups.items()):
        for ax, metric in zip(row, metrics):
            _metric_panel(ax, records, metric, f"{group}: {metric}" if group else metric)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return write_bytes(path, buffer.getvalue(), overwrite=True)


def _metric_panel(ax, records: Sequence[EvalRecord], metric: str, title: str) -> None:
    means = np.array([r.metrics.get(metric, np.nan) for r in records])
    cis = np.array([r.metrics.get(f"{metric}_ci95", 0.0) for r in records])
    ax.errorbar(range(len(records)), means, yerr=cis, marker="o", capsize=3)
    ax.set_xticks(range(len(records)), [r.label for r in records], rotation=30, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


SIDE_BY_SIDE_PROMPTS = 8
"""Prompts (rows, each with its seeds) of the report's side-by-side grid."""


def side_by_side(records: Sequence[EvalRecord], root: str | Path, path: str | Path,
                 max_prompts: int = SIDE_BY_SIDE_PROMPTS,
                 scale: int | None = None) -> Path | None:
    """Rows = (prompt, seed), columns = models: the same prompts and seeds across every model."""
    columns, files = [], []
    for record in records:
        images_file = Path(root) / Path(record.scores.path).parent / "images.parquet"
        if not images_file.exists():
            return None
        files.append(images_file)
        table = read_table(images_file).to_pydict()
        columns.append({(p, s): (row, png)
                        for row, (p, s, png) in enumerate(zip(table["prompt"], table["seed_index"], table["png"]))})
    keys = [k for k in columns[0] if all(k in c for c in columns)]
    prompts = list(dict.fromkeys(p for p, _ in keys))[:max_prompts]
    keys = [k for k in keys if k[0] in prompts]
    if not keys:
        return None
    tiles = [[_decode_png(*c[k], files[i]) for i, c in enumerate(columns)] for k in keys]
    h, w, _ = tiles[0][0].shape
    scale = scale or max(1, 96 // h)
    pad = 2
    grid = np.full((len(keys) * (h + pad) + pad, len(columns) * (w + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = tile
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return write_bytes(path, encode_png(grid), overwrite=True)


def _decode_png(row: int, data: bytes, file: Path) -> np.ndarray:
    try:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except (OSError, ValueError) as exc:  # PIL raises UnidentifiedImageError (an OSError) or ValueError
        raise InputError(f"cannot decode the image ({exc}); delete {file.parent} to evaluate that model again",
                         file=file, row=row, column="png") from exc


def write_run_report(layout: RunLayout, report_dir: str, evaluations: Sequence[EvalRecord],
                     models: Sequence[ModelRef], config: SailConfig) -> Path:
    """``<run>/<report_dir>/``: metrics (text table, Parquet, plot), the same prompts and seeds side by side,
    the config, and ``models.json`` (each evaluated model's label, checkpoint and identity, which
    ``sail evaluate`` reads); and ``<run>/manifest.json``, every finished stage of the run."""
    root = layout.root
    report = root / check_name(report_dir, "report folder name", "report_dir")
    write_metrics(evaluations, report / "metrics.parquet")
    if metric_names(evaluations):
        plot_metrics(evaluations, report / "metrics.png")
    side_by_side(evaluations, root, report / "samples.png")
    write_text(report / "metrics.txt", format_table(evaluations) + "\n", overwrite=True)
    write_text(report / "config.json", json.dumps(config.model_dump(mode="json"), indent=2), overwrite=True)
    write_models(report, [(e.label, m) for e, m in zip(evaluations, models)])
    write_manifest(layout)
    return report


def write_manifest(layout: RunLayout) -> Path:
    """``<run>/manifest.json``: every finished stage of the run (rewritten when a stage finishes after the
    report, e.g. the export)."""
    return write_text(layout.root / "manifest.json", json.dumps({"stages": manifest(layout)}, indent=2),
                      overwrite=True)


def write_models(report: Path, models: Sequence[tuple[str, ModelRef]]) -> Path:
    """``models.json``: each evaluated model's label, checkpoint (paths relative to the run) and identity."""
    return write_text(report / "models.json", json.dumps([{"label": label, **model.model_dump(mode="json")}
                                                          for label, model in models], indent=2), overwrite=True)
