"""What a finished run holds for an export: its config, its models in order, and their evaluations.

Read from the run's report (``<report>/config.json``, ``models.json``, ``metrics.parquet``, written by
the flow after the last evaluation) and the stages' records. Nothing is written into the run: a run in
object storage is read through a working copy of its own (:class:`sail_core.io.remote.RunStore`,
workspace ``export``), and a local run directory is only read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sail_core.config import SailConfig, load_config
from sail_core.errors import InputError
from sail_core.io.remote import RunStore, is_url
from sail_core.io.tables import read_table
from sail_core.run.keys import model_settings
from sail_core.run.layout import Artifact
from sail_core.run.lineage import ModelRef
from sail_core.run.records import EvalRecord, ModelRecord

BASE_LABEL = "base"
REPORT_FILES = ("config.json", "models.json", "metrics.parquet", "metrics.txt", "samples.png")


@dataclass(frozen=True)
class RunModel:
    label: str
    """``base``, ``round-00`` (seed DPO), ``round-01`` ..."""
    ref: ModelRef
    metrics: dict[str, float]
    """Its row of the report's ``metrics.parquet`` (empty when it was not evaluated)."""


@dataclass(frozen=True)
class ChosenModel:
    model: RunModel
    reason: str
    """Why this model: ``--model round-02``, ``the last round``, ``the highest utility ...``."""
    metric: str | None
    """The metric that chose it (``best`` only)."""


@dataclass(frozen=True)
class FinishedRun:
    location: str
    """As given: a directory or an fsspec URL."""
    root: Path
    """The run's files on this host (the directory itself, or a working copy of a remote run)."""
    config: SailConfig
    models: tuple[RunModel, ...]
    primary_metric: str | None
    """The report's headline metric (the first its evaluations list), which ``best`` maximises."""
    report: Path
    store: RunStore | None = None
    named: bool = True
    """Whether the export may name the run (its folder's name); a run's own export stage does not, so that
    a copied or renamed run directory, or its working copy on another host, holds the same export."""

    @property
    def name(self) -> str | None:
        return self.location.rstrip("/").rsplit("/", 1)[-1] if self.named else None

    @property
    def trained(self) -> list[RunModel]:
        return [m for m in self.models if m.label != BASE_LABEL]

    def labels(self) -> str:
        return ", ".join(m.label for m in self.models)

    def model(self, label: str) -> RunModel:
        for m in self.models:
            if m.label == label:
                return m
        raise KeyError(label)

    def choose(self, spec: str, metric: str | None = None) -> ChosenModel:
        """``best`` (highest ``metric``, default the report's headline metric, among the trained models),
        ``last``, or a label (``round-03``, also ``round-3`` or ``3``)."""
        trained = self.trained
        if not trained:
            raise InputError(f"the run has no trained model (its models: {self.labels()})", file=self.location)
        if spec == "last":
            return ChosenModel(trained[-1], "the last model of the run", None)
        if spec == "best":
            return self._best(trained, metric or self.primary_metric)
        label = _label(spec)
        if label == BASE_LABEL:
            raise InputError("'base' is the pretrained model the run started from, not a model it trained: "
                             f"choose one of {', '.join(m.label for m in trained)}, best or last", parameter="--model")
        if label is None:
            raise InputError(f"{spec!r} is not a model: use best, last or a round such as {trained[-1].label}",
                             parameter="--model")
        try:
            return ChosenModel(self.model(label), f"chosen by name ({label})", None)
        except KeyError:
            raise InputError(f"the run has no model {label}: its trained models are "
                             f"{', '.join(m.label for m in trained)}", parameter="--model") from None

    def _best(self, trained: list[RunModel], metric: str | None) -> ChosenModel:
        if metric is None:
            return ChosenModel(trained[-1], "the last model (the run's report has no metric to choose the best by)",
                               None)
        scored = [(m.metrics[metric], i, m) for i, m in enumerate(trained)
                  if isinstance(m.metrics.get(metric), (int, float)) and math.isfinite(m.metrics[metric])]
        if not scored:
            known = sorted({k for m in trained for k in m.metrics if not k.endswith(("_ci95", "_win_rate"))})
            raise InputError(f"no trained model has the metric {metric!r} in the run's report (it has "
                             f"{', '.join(known) or 'none'})", parameter="--metric")
        value, _, best = max(scored, key=lambda s: (s[0], -s[1]))  # ties: the earlier round
        return ChosenModel(best, f"the highest {metric} in the run's report ({value:.4f})", metric)


def _label(spec: str) -> str | None:
    text = spec.strip().lower()
    if text == BASE_LABEL:
        return BASE_LABEL
    number = text.removeprefix("round-").removeprefix("round")
    return f"round-{int(number):02d}" if number.isdigit() else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable JSON file ({exc})", file=path) from exc


def _records(root: Path, pattern: str) -> list[dict[str, Any]]:
    entries = []
    for path in sorted(root.glob(pattern)):
        entry = _read_json(path)
        if isinstance(entry, dict) and "record" in entry:
            entries.append({**entry, "_path": path})
    return entries


def open_run(location: str, report_dir: str = "report") -> FinishedRun:
    """The finished run at ``location`` (a directory or an fsspec URL), read through its report.

    A directory with no finished training is refused naming that; a run whose training finished but
    whose report is not written yet (interrupted, or still running) is refused naming the missing
    report and listing the models that did finish."""
    store = None
    if is_url(location):
        store = RunStore(location, workspace="export")
        store.pull([f"{report_dir}/{name}" for name in REPORT_FILES])
        store.pull([r for r in store.records() if r.startswith(("round-", "eval-"))])
        root = store.local
    else:
        root = Path(location.removeprefix("file://"))
        if not root.is_dir():
            raise InputError("run directory does not exist", file=location)
    report = root / report_dir
    if not (report / "models.json").is_file() or not (report / "config.json").is_file():
        raise _unfinished(root, location, report_dir)
    config = load_config(report / "config.json")
    entries = _read_json(report / "models.json")
    rows = {}
    if (report / "metrics.parquet").is_file():
        rows = {row.pop("model"): {k: v for k, v in row.items() if v is not None}
                for row in read_table(report / "metrics.parquet").to_pylist()}
    try:
        models = tuple(RunModel(e["label"], ModelRef.model_validate(e), rows.get(e["label"], {})) for e in entries)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a list of models: {exc}", file=report / "models.json") from exc
    return FinishedRun(location, root, config, models, _primary_metric(root, config), report, store)


def _primary_metric(root: Path, config: SailConfig) -> str | None:
    """The first headline metric of the base's evaluation under the run's protocol (the order the report's
    table uses); the records keep the scorers' order, the Parquet table does not."""
    from sail_core.evaluation.run_report import metric_names

    wanted = {"model": model_settings(config), "eval": config.eval.model_dump(mode="json")}
    for entry in _records(root, f"eval-{BASE_LABEL}/evaluate-*.json"):
        if entry.get("settings") == wanted:
            names = metric_names([EvalRecord.model_validate(entry["record"])])
            return names[0] if names else None
    return None


def _unfinished(root: Path, location: str, report_dir: str) -> InputError:
    trained = sorted({f"round-{e['record']['round']:02d}" for e in _records(root, "round-*/train-*.json")
                      if isinstance(e["record"], dict) and "round" in e["record"]})
    if not trained:
        return InputError("the run has no trained model: no training stage finished (round-NN/train-*.json); "
                          "run it with sail run first", file=location)
    return InputError(f"the run is unfinished: its last stage, the report ({report_dir}/models.json, written "
                      f"after the last evaluation), is missing; trained so far: {', '.join(trained)}. Resume it "
                      "(sail run with the same --run-name) and export again", file=location)


def checkpoint_files(ref: ModelRef) -> list[str]:
    """The run files a model's weights are (a fine-tuned UNet folder, or its lineage's adapters)."""
    checkpoint = ref.checkpoint
    return ([checkpoint.weights] if checkpoint.weights else []) + list(checkpoint.adapters)


def fetch_weights(run: FinishedRun, model: RunModel) -> None:
    """Bring a model's weights into ``run.root`` (a remote run) and check them against what their training
    recorded: a file changed or deleted since is named, never exported."""
    files = checkpoint_files(model.ref)
    if run.store is not None:
        run.store.pull(files)
    recorded: dict[str, Artifact] = {}
    for entry in _records(run.root, "round-*/train-*.json"):
        try:
            record = ModelRecord.model_validate(entry["record"])
        except ValueError:
            continue
        recorded[record.weights.path] = record.weights
    for rel in files:
        path = run.root / rel
        if not path.exists():
            raise InputError(f"the weights of {model.label} are missing", file=path)
        artifact = recorded.get(rel)
        if artifact is not None and not artifact.verify(run.root):
            raise InputError(f"the weights of {model.label} changed since their training finished", file=path)
