"""Experiment results: per (arm, seed, model) metrics, and tables of mean ± spread over seeds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from sail_core.io.atomic import write_text
from sail_core.io.tables import write_table


def results_table(rows: Sequence[dict]) -> pa.Table:
    keys = sorted({k for r in rows for k in r})
    return pa.table({k: [r.get(k) for r in rows] for k in keys})


def summarize_over_seeds(rows: Sequence[dict], metrics: Sequence[str],
                         group_by: Sequence[str] = ("arm", "model")) -> list[dict]:
    """Mean and sample standard deviation over seeds of each metric, per group (in first-seen order)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[g] for g in group_by), []).append(row)
    out = []
    for key, members in groups.items():
        entry = dict(zip(group_by, key))
        entry["seeds"] = len(members)
        for metric in metrics:
            values = np.array([m[metric] for m in members if m.get(metric) is not None], dtype=np.float64)
            entry[metric] = float(values.mean()) if values.size else float("nan")
            entry[f"{metric}_sd"] = float(values.std(ddof=1)) if values.size > 1 else float("nan")
        out.append(entry)
    return out


def markdown_table(summary: Sequence[dict], metrics: Sequence[str], group_by: Sequence[str] = ("arm", "model"),
                   digits: int = 3) -> str:
    header = [*group_by, "seeds", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summary:
        cells = [str(row[g]) for g in group_by] + [str(row["seeds"])]
        cells += [f"{row[m]:.{digits}f} ± {row[m + '_sd']:.{digits}f}" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(out_dir: str | Path, name: str, rows: Sequence[dict], markdown: str) -> None:
    out_dir = Path(out_dir)
    write_table(out_dir / f"{name}.parquet", results_table(rows), overwrite=True)
    write_text(out_dir / f"{name}.md", markdown + "\n", overwrite=True)
