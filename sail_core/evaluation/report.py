"""The paper's results tables (SAIL, Tables 1-3) from evaluations of several models on several prompt sets.

One row per model (base, iteration 0, rounds 1..R, or any labelled checkpoint); one column group
per prompt set; within a group one column per metric (mean ± 95% CI) and, for prompt sets with
categories that the layout names (by default the HPSv2 benchmark, whose categories are its styles
anime / concept-art / paintings / photo), the per-category means of one metric, as Table 1 reports
HPSv2 per style. Win rates against the base on the same prompts and seeds form a table of their own.

The numbers are the evaluations' summaries (``EvalRecord.metrics``), never recomputed here, so the
table says exactly what each evaluation's ``summary.json`` says. Tables are written as Markdown, CSV
and Parquet (the same numbers), with a plot per metric and prompt set and side-by-side image grids.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from sail_core.data.prompt_sets import HPSV2
from sail_core.errors import InputError
from sail_core.evaluation.run_report import metric_names, plot_metric_grid, side_by_side
from sail_core.io.atomic import write_text
from sail_core.io.tables import write_table
from sail_core.run.records import EvalRecord

MISSING = "–"


@dataclass(frozen=True)
class ModelEvaluation:
    """One model evaluated on one prompt set."""

    model: str
    prompt_set: str
    record: EvalRecord


@dataclass(frozen=True)
class Column:
    prompt_set: str
    metric: str
    category: str | None = None
    """Set for a per-category column: the mean of ``metric`` over that category's images."""
    suffix: str = ""
    """Which summary entry the column shows besides the metric itself (``_win_rate``)."""

    @property
    def key(self) -> str:
        """The column's entry in ``EvalRecord.metrics``."""
        return (self.metric if self.category is None else f"{self.metric}@{self.category}") + self.suffix

    @property
    def name(self) -> str:
        return f"{self.prompt_set}/{self.key}"


@dataclass(frozen=True)
class Cell:
    value: float
    ci95: float | None = None


@dataclass(frozen=True)
class ResultsTable:
    title: str
    models: tuple[str, ...]
    columns: tuple[Column, ...]
    cells: Mapping[tuple[str, str], Cell]
    """(model, column name) -> cell; absent where the model was not evaluated on that set."""
    digits: int = 4

    def cell(self, model: str, column: Column) -> Cell | None:
        return self.cells.get((model, column.name))

    def has_ci(self, column: Column) -> bool:
        return any(self.cell(m, column) is not None and self.cell(m, column).ci95 is not None for m in self.models)


@dataclass(frozen=True)
class TableLayout:
    metrics: tuple[str, ...] | None = None
    """Metric columns in order; None = every metric evaluated, in the scorers' order."""
    category_metric: str | None = None
    """The metric of the per-category columns; None = HPSv2 if evaluated (Table 1), else the first."""
    category_sets: tuple[str, ...] = (HPSV2,)
    """Prompt sets that get per-category columns (PartiPrompts' 12 categories would swamp the table)."""


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    metrics_csv: Path
    metrics_parquet: Path
    win_rates_csv: Path
    win_rates_parquet: Path
    plot: Path | None
    samples: dict[str, Path] = field(default_factory=dict)


def _ordered(evaluations: Sequence[ModelEvaluation]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Models and prompt sets in first-seen order: the caller's order is the table's."""
    models = tuple(dict.fromkeys(e.model for e in evaluations))
    sets = tuple(dict.fromkeys(e.prompt_set for e in evaluations))
    return models, sets


def _by_cell(evaluations: Sequence[ModelEvaluation]) -> dict[tuple[str, str], EvalRecord]:
    grid: dict[tuple[str, str], EvalRecord] = {}
    for e in evaluations:
        if (e.model, e.prompt_set) in grid:
            raise InputError(f"model {e.model!r} is evaluated twice on prompt set {e.prompt_set!r}",
                             parameter="evaluations")
        grid[(e.model, e.prompt_set)] = e.record
    return grid


def _set_records(evaluations: Sequence[ModelEvaluation], prompt_set: str) -> list[EvalRecord]:
    """The set's records in the table's model order."""
    models, _ = _ordered(evaluations)
    found = {e.model: e.record for e in evaluations if e.prompt_set == prompt_set}
    return [found[m] for m in models if m in found]


def _categories(records: Sequence[EvalRecord], metric: str) -> list[str]:
    prefix = f"{metric}@"
    found = (k[len(prefix):] for r in records for k in r.metrics if k.startswith(prefix))
    return list(dict.fromkeys(found))


def chosen_category_metric(metrics: Sequence[str], wanted: str | None) -> str | None:
    if wanted is not None:
        if wanted not in metrics:
            raise InputError(f"metric {wanted!r} was not evaluated (metrics: {list(metrics)})",
                             parameter="category_metric")
        return wanted
    return next((m for m in metrics if m.startswith("hps")), metrics[0] if metrics else None)


def _metric_columns(evaluations: Sequence[ModelEvaluation], layout: TableLayout) -> list[Column]:
    _, sets = _ordered(evaluations)
    columns: list[Column] = []
    for prompt_set in sets:
        records = _set_records(evaluations, prompt_set)
        metrics = list(layout.metrics or metric_names(records))
        columns += [Column(prompt_set, m) for m in metrics]
        if prompt_set in layout.category_sets and metrics:
            chosen = chosen_category_metric(metrics, layout.category_metric)
            columns += [Column(prompt_set, chosen, c) for c in _categories(records, chosen)]
    return columns


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def metrics_table(evaluations: Sequence[ModelEvaluation], layout: TableLayout = TableLayout()) -> ResultsTable:
    """Means (± 95% CI) per model, prompt set and metric, plus the chosen metric per category."""
    models, _ = _ordered(evaluations)
    grid = _by_cell(evaluations)
    columns = _metric_columns(evaluations, layout)
    cells: dict[tuple[str, str], Cell] = {}
    for model in models:
        for column in columns:
            record = grid.get((model, column.prompt_set))
            if record is None or column.key not in record.metrics:
                continue
            ci = record.metrics.get(f"{column.key}_ci95") if column.category is None else None
            cells[(model, column.name)] = Cell(record.metrics[column.key], _finite(ci))
    return ResultsTable("Mean score (± 95% CI)", models, tuple(columns), cells)


def win_rate_table(evaluations: Sequence[ModelEvaluation], baseline: str,
                   metrics: Sequence[str] | None = None) -> ResultsTable:
    """Per model other than ``baseline``: the share of (prompt, seed) items on which it beats the
    baseline (ties count one half), per prompt set and metric."""
    models, sets = _ordered(evaluations)
    grid = _by_cell(evaluations)
    columns = [Column(s, m, suffix="_win_rate") for s in sets
               for m in (metrics or metric_names(_set_records(evaluations, s)))]
    rows = tuple(m for m in models if m != baseline)
    cells = {(model, c.name): Cell(grid[(model, c.prompt_set)].metrics[c.key])
             for model in rows for c in columns
             if (model, c.prompt_set) in grid and c.key in grid[(model, c.prompt_set)].metrics}
    return ResultsTable(f"Win rate against {baseline} (same prompts and seeds; ties count 1/2)", rows,
                        tuple(columns), cells, digits=3)


def _format(cell: Cell | None, digits: int) -> str:
    if cell is None:
        return MISSING
    text = f"{cell.value:.{digits}f}"
    return text if cell.ci95 is None else f"{text} ± {cell.ci95:.{digits}f}"


def to_markdown(table: ResultsTable) -> str:
    header = ["model", *(c.name for c in table.columns)]
    rows = [[m, *(_format(table.cell(m, c), table.digits) for c in table.columns)] for m in table.models]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    rule = "|" + "|".join(":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _flat_columns(table: ResultsTable) -> list[tuple[str, Column, bool]]:
    """(CSV/Parquet column name, table column, whether it holds the CI) in order."""
    out: list[tuple[str, Column, bool]] = []
    for column in table.columns:
        out.append((column.name, column, False))
        if table.has_ci(column):
            out.append((f"{column.name}_ci95", column, True))
    return out


def _flat_values(table: ResultsTable) -> dict[str, list]:
    values: dict[str, list] = {"model": list(table.models)}
    for name, column, is_ci in _flat_columns(table):
        cells = [table.cell(m, column) for m in table.models]
        values[name] = [None if c is None else (c.ci95 if is_ci else c.value) for c in cells]
    return values


def to_csv(table: ResultsTable) -> str:
    """The table's numbers at full precision; an empty field where a model was not evaluated."""
    values = _flat_values(table)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(values))
    for i in range(len(table.models)):
        writer.writerow(["" if v[i] is None else (v[i] if isinstance(v[i], str) else repr(v[i]))
                         for v in values.values()])
    return buffer.getvalue()


def to_arrow(table: ResultsTable) -> pa.Table:
    """The CSV's columns, typed; the schema metadata says which prompt set, metric and category each is."""
    values = _flat_values(table)
    arrays = {"model": pa.array(values.pop("model"), pa.string()),
              **{k: pa.array(v, pa.float64()) for k, v in values.items()}}
    described = [{"name": n, "prompt_set": c.prompt_set, "metric": c.metric, "category": c.category,
                  "statistic": "ci95" if is_ci else ("win_rate" if c.suffix else "mean")}
                 for n, c, is_ci in _flat_columns(table)]
    return pa.table(arrays).replace_schema_metadata({"title": table.title, "columns": json.dumps(described)})


def file_slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "prompts"


def _samples(evaluations: Sequence[ModelEvaluation], root: Path, out_dir: Path) -> dict[str, Path]:
    """Per prompt set, the same prompts and seeds side by side, one column per model in table order."""
    _, sets = _ordered(evaluations)
    written = {}
    for prompt_set in sets:
        path = side_by_side(_set_records(evaluations, prompt_set), root,
                            out_dir / f"samples-{file_slug(prompt_set)}.png")
        if path is not None:
            written[prompt_set] = path
    return written


def _markdown_report(metrics: ResultsTable, wins: ResultsTable, files: ReportFiles, sets: Sequence[str]) -> str:
    parts = [f"## {metrics.title}", "", to_markdown(metrics), "", f"## {wins.title}", "", to_markdown(wins), ""]
    if files.plot is not None:
        parts += ["## Metrics across models", "", f"![metrics]({files.plot.name})", ""]
    for prompt_set in sets:
        if prompt_set in files.samples:
            parts += [f"## Samples: {prompt_set}", "",
                      f"Columns, left to right: {', '.join(metrics.models)}; rows: (prompt, seed).", "",
                      f"![{prompt_set}]({files.samples[prompt_set].name})", ""]
    return "\n".join(parts)


def write_report(evaluations: Sequence[ModelEvaluation], root: str | Path, out_dir: str | Path,
                 layout: TableLayout = TableLayout(), baseline: str | None = None) -> ReportFiles:
    """``report.md`` (both tables, the plot, the grids), ``metrics``/``win_rates`` as CSV and Parquet,
    ``metrics.png`` and ``samples-<prompt set>.png``. ``root``: the folder the records' paths are
    relative to; ``baseline``: the model win rates are against (default: the first, the base)."""
    if not evaluations:
        raise InputError("no evaluations to report", parameter="evaluations")
    root, out_dir = Path(root), Path(out_dir)
    models, sets = _ordered(evaluations)
    metrics = metrics_table(evaluations, layout)
    wins = win_rate_table(evaluations, baseline or models[0], layout.metrics)
    names = list(layout.metrics or metric_names([e.record for e in evaluations]))
    plot = (plot_metric_grid({s: _set_records(evaluations, s) for s in sets}, out_dir / "metrics.png", names)
            if names else None)
    files = ReportFiles(
        markdown=out_dir / "report.md",
        metrics_csv=write_text(out_dir / "metrics.csv", to_csv(metrics), overwrite=True),
        metrics_parquet=write_table(out_dir / "metrics.parquet", to_arrow(metrics), overwrite=True),
        win_rates_csv=write_text(out_dir / "win_rates.csv", to_csv(wins), overwrite=True),
        win_rates_parquet=write_table(out_dir / "win_rates.parquet", to_arrow(wins), overwrite=True),
        plot=plot, samples=_samples(evaluations, root, out_dir),
    )
    write_text(files.markdown, _markdown_report(metrics, wins, files, sets), overwrite=True)
    return files
