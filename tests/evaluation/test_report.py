"""``sail evaluate`` on a tiny SD1.5 run: the results table's layout and numbers, reuse of finished
evaluations, determinism of the protocol, and clear errors for bad inputs.

The run is built through the runner into keyed stage directories, as the flow writes them:
seed → round-00 (seed DPO) → round-01. Round 1 trains on the seed pairs instead of a self-generated
mixed set: evaluation only needs the lineage of trained models, not how their pairs were made.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sail_cli.main import main as sail_main
from sail_core.errors import InputError
from sail_core.evaluation.report import ModelEvaluation, TableLayout, metrics_table, to_markdown, win_rate_table
from sail_core.evaluation.run_report import write_models
from sail_core.io.atomic import sha256_tree, write_text
from sail_core.io.tables import read_table
from sail_core.run.bookkeeping import stage_dir
from sail_core.run.layout import Artifact, RunLayout
from sail_core.run.lineage import base_model
from sail_core.run.records import EvalRecord
from sail_core.run.runner import run_stage, stage_key
from sail_core.run.stage import NoInputs
from sail_core.stages import SEED, TRAIN, TrainInputs
from tests.builders import standard_pickapic, tiny_config

STYLES = {
    "anime": ["a girl with silver hair, anime style", "a mecha robot in a city, cel shading"],
    "concept-art": ["a floating castle above clouds, concept art", "an alien desert outpost at dusk"],
    "paintings": ["an oil painting of a harbour at sunrise", "a watercolour of a fox in snow"],
    "photo": ["a photo of a red bicycle against a wall", "a close-up photo of a honeybee on a flower"],
}
PARTI = [("a green apple on a table", "Food & Beverage", "Basic"),
         ('"Hello" written in the sand', "Abstract", "Writing & Symbols"),
         ("a tiger wearing a tuxedo", "Animals", "Imagination")]
MODELS = ["base", "round-00", "round-01", "again", "unet"]
SCORERS = ["pickscore", "hpsv2"]
CLI_SCORERS = ["--scorer", "pickscore", "--scorer", "hpsv2", "--scorer-source", "pickscore=random",
               "--scorer-source", "hpsv2=random"]


def main(argv: list[str]) -> int:
    """The CLI with ``--debug``: its errors propagate as exceptions, which these tests inspect."""
    return sail_main(["--debug", *argv])


def write_hpsv2(folder: Path, styles: dict[str, list[str]]) -> Path:
    """The HPSv2 benchmark's layout: one JSON list of prompts per style."""
    folder.mkdir(parents=True)
    for style, prompts in styles.items():
        (folder / f"{style}.json").write_text(json.dumps(prompts))
    return folder


def write_parti(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """PartiPrompts.tsv: tab-separated, unquoted, header Prompt/Category/Challenge/Note."""
    lines = ["Prompt\tCategory\tChallenge\tNote", *(f"{p}\t{c}\t{ch}\t" for p, c, ch in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class TinyRun:
    run: Path
    hpsv2: Path
    parti: Path
    round0_record: Path
    pipeline: Path


@pytest.fixture(scope="module")
def tiny_run(tiny_sd15, tmp_path_factory) -> TinyRun:
    root = tmp_path_factory.mktemp("evaluate")
    pool = root / "pool.txt"
    pool.write_text("\n".join(f"pool prompt number {i}" for i in range(8)))
    pairs = standard_pickapic(root / "pap.parquet")
    config = tiny_config("sd15", tiny_sd15, pairs, pool, **{"eval.max_prompts": None})
    layout = RunLayout(root / "run")
    seed = run_stage(SEED, config, layout, NoInputs())
    models = [("base", base_model(config))]
    for round_index in (0, 1):
        inputs = TrainInputs(round_index=round_index, pairs=seed.pairs, init=models[-1][1])
        models.append((f"round-{round_index:02d}", run_stage(TRAIN, config, layout, inputs).model))
        if round_index == 0:
            round0 = stage_dir(layout, stage_key(TRAIN, config, inputs)).with_suffix(".json")
    # the flow saves the run's config and models here; `sail evaluate RUN` takes its protocol and models from them
    write_text(layout.root / "report" / "config.json", json.dumps(config.model_dump(mode="json")))
    write_models(layout.root / "report", models)
    return TinyRun(layout.root, write_hpsv2(root / "hpsv2" / "benchmark", STYLES),
                   write_parti(root / "PartiPrompts.tsv", PARTI), round0, tiny_sd15)


def evaluate_cli(run: TinyRun, out: Path, *extra: str) -> str:
    argv = [str(run.run), "--prompts", f"hpsv2_benchmark:{run.hpsv2.parent}", "--prompts", f"partiprompts:{run.parti}",
            *CLI_SCORERS, "--checkpoint", f"again={run.round0_record}", "--checkpoint", f"unet={run.pipeline}",
            "--out", str(out), *extra]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["evaluate", *argv]) == 0
    return stdout.getvalue()


@dataclass(frozen=True)
class Evaluated:
    out: Path
    printed: str
    index: list[dict]

    def entry(self, model: str, prompt_set: str) -> dict:
        return next(e for e in self.index if e["model"] == model and e["prompt_set"] == prompt_set)

    def scores(self, model: str, prompt_set: str) -> dict[str, list]:
        return read_table(self.out / self.entry(model, prompt_set)["stage_dir"] / "scores.parquet").to_pydict()

    def images(self, model: str, prompt_set: str) -> dict[str, list]:
        return read_table(self.out / self.entry(model, prompt_set)["stage_dir"] / "images.parquet").to_pydict()


def _index(out: Path) -> list[dict]:
    return json.loads((out / "report" / "evaluations.json").read_text())


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory) -> Evaluated:
    out = tmp_path_factory.mktemp("evaluation")
    printed = evaluate_cli(tiny_run, out)
    return Evaluated(out, printed, _index(out))


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), [line.split(",") for line in lines[1:]]


def _ci95(values: np.ndarray) -> float:
    return 1.959963984540054 * float(np.std(values, ddof=1)) / math.sqrt(len(values))


def test_table_layout_rows_per_model_and_per_style_columns(evaluated):
    header, rows = _csv_rows(evaluated.out / "report" / "metrics.csv")
    per_metric = [c for m in SCORERS for c in (f"hpsv2_benchmark/{m}", f"hpsv2_benchmark/{m}_ci95")]
    styles = [f"hpsv2_benchmark/hpsv2@{s}" for s in STYLES]  # the chosen metric per style, as Table 1
    parti = [c for m in SCORERS for c in (f"partiprompts/{m}", f"partiprompts/{m}_ci95")]  # no per-category
    assert header == ["model", *per_metric, *styles, *parti]
    assert [r[0] for r in rows] == MODELS
    assert all(len(r) == len(header) and all(r) for r in rows)  # every cell filled
    printed = evaluated.printed.splitlines()  # the Markdown table: CIs are in the cells, not columns
    assert [c.strip() for c in printed[0].split("|")[1:-1]] == ["model", *[h for h in header[1:]
                                                                          if not h.endswith("_ci95")]]
    assert [line.split("|")[1].strip() for line in printed[2:7]] == MODELS
    wins_header, wins_rows = _csv_rows(evaluated.out / "report" / "win_rates.csv")
    assert wins_header == ["model", *[f"{s}/{m}_win_rate" for s in ("hpsv2_benchmark", "partiprompts")
                                      for m in SCORERS]]
    assert [r[0] for r in wins_rows] == MODELS[1:]  # the base is the baseline
    report = evaluated.out / "report"
    for name in ("report.md", "metrics.parquet", "win_rates.parquet", "metrics.png", "samples-hpsv2_benchmark.png",
                 "samples-partiprompts.png"):
        assert (report / name).stat().st_size > 0, name
    # the parquet holds exactly the CSV's numbers
    table = pq.read_table(report / "metrics.parquet")
    assert table.column_names == header
    for row, values in zip(rows, table.to_pylist()):
        assert [float(x) for x in row[1:]] == [values[c] for c in header[1:]]


def test_table_numbers_are_the_means_of_scores_parquet(evaluated):
    header, rows = _csv_rows(evaluated.out / "report" / "metrics.csv")
    table = {r[0]: dict(zip(header[1:], map(float, r[1:]))) for r in rows}
    markdown = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
                for line in evaluated.printed.splitlines()[2:7]}
    shown = [h for h in header[1:] if not h.endswith("_ci95")]
    for model in MODELS:
        for prompt_set in ("hpsv2_benchmark", "partiprompts"):
            scores = evaluated.scores(model, prompt_set)
            assert len(scores["prompt"]) == {"hpsv2_benchmark": 8, "partiprompts": 3}[prompt_set] * 2
            for metric in SCORERS:
                values = np.asarray(scores[metric])
                column = f"{prompt_set}/{metric}"
                assert table[model][column] == pytest.approx(values.mean(), rel=1e-12, abs=1e-12)
                assert table[model][f"{column}_ci95"] == pytest.approx(_ci95(values), rel=1e-9)
                cell = markdown[model][shown.index(column)]
                assert cell == f"{values.mean():.4f} ± {_ci95(values):.4f}"
        hps = evaluated.scores(model, "hpsv2_benchmark")
        for style in STYLES:
            mine = [v for v, c in zip(hps["hpsv2"], hps["category"]) if c == style]
            assert len(mine) == 4  # 2 prompts x 2 seeds
            assert table[model][f"hpsv2_benchmark/hpsv2@{style}"] == pytest.approx(np.mean(mine), rel=1e-12)


def test_win_rates_compare_the_same_prompts_and_seeds_with_the_base(evaluated):
    header, rows = _csv_rows(evaluated.out / "report" / "win_rates.csv")
    table = {r[0]: dict(zip(header[1:], map(float, r[1:]))) for r in rows}
    for prompt_set in ("hpsv2_benchmark", "partiprompts"):
        base = evaluated.scores("base", prompt_set)
        by_item = {(p, s): i for i, (p, s) in enumerate(zip(base["prompt"], base["seed_index"]))}
        for model in MODELS[1:]:
            scores = evaluated.scores(model, prompt_set)
            assert scores["seed"] == base["seed"]  # the same noise for the same (prompt, seed index)
            for metric in SCORERS:
                base_values = [base[metric][by_item[(p, s)]] for p, s in zip(scores["prompt"], scores["seed_index"])]
                diff = np.asarray(scores[metric]) - np.asarray(base_values)
                expected = float(np.mean(np.where(diff == 0, 0.5, (diff > 0).astype(float))))
                assert table[model][f"{prompt_set}/{metric}_win_rate"] == pytest.approx(expected)
    assert table["unet"]["hpsv2_benchmark/pickscore_win_rate"] == 0.5  # the base itself: all ties


def test_protocol_is_deterministic_across_independent_evaluations(evaluated):
    """`again` is round-00 evaluated a second time (its own stage directory), `unet` is the base's UNet
    loaded as a full checkpoint: same seeds → same images → same scores."""
    for twin, model in (("again", "round-00"), ("unet", "base")):
        for prompt_set in ("hpsv2_benchmark", "partiprompts"):
            assert evaluated.entry(twin, prompt_set)["stage_dir"] != evaluated.entry(model, prompt_set)["stage_dir"]
            assert evaluated.images(twin, prompt_set)["png"] == evaluated.images(model, prompt_set)["png"]
            assert evaluated.scores(twin, prompt_set) == evaluated.scores(model, prompt_set)
    # ...while training did change the model: the equalities above are not vacuous
    assert evaluated.images("round-01", "hpsv2_benchmark")["png"] != evaluated.images("base", "hpsv2_benchmark")["png"]
    seeds = evaluated.scores("base", "hpsv2_benchmark")["seed"]
    assert len(set(seeds)) == len(seeds)  # every (prompt, seed index) its own noise


def test_second_invocation_reuses_finished_evaluations(tiny_run, evaluated):
    files = sorted(p for p in evaluated.out.glob("eval-*/**/*") if p.is_file())  # data and stage records
    assert len(files) >= len(MODELS) * 2 * 4  # scores, images, summary, grid per evaluation (+ records)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    printed = evaluate_cli(tiny_run, evaluated.out)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before  # nothing regenerated
    index = _index(evaluated.out)
    assert [e["reused"] for e in index] == [True] * len(MODELS) * 2
    assert [e["stage_dir"] for e in index] == [e["stage_dir"] for e in evaluated.index]
    assert printed == evaluated.printed


def test_empty_prompt_set_is_a_clear_input_error_before_anything_runs(tiny_run, tmp_path):
    empty = write_hpsv2(tmp_path / "empty", {style: [] for style in STYLES})
    header_only = write_parti(tmp_path / "PartiPrompts.tsv", [])
    for spec, match in ((f"hpsv2_benchmark:{empty}", "prompt set is empty"),
                        (f"partiprompts:{header_only}", "prompt set is empty")):
        out = tmp_path / "out"
        with pytest.raises(InputError, match=match) as info:
            main(["evaluate", str(tiny_run.run), "--prompts", f"partiprompts:{tiny_run.parti}", "--prompts", spec,
                  *CLI_SCORERS, "--out", str(out)])
        assert info.value.file is not None and Path(info.value.file).is_relative_to(tmp_path)
        assert not out.exists()  # checked before the first (valid) set was evaluated


def test_bad_inputs_name_the_parameter(tiny_run, tmp_path):
    out = str(tmp_path / "out")
    base = [str(tiny_run.run), "--prompts", f"partiprompts:{tiny_run.parti}", "--out", out]
    with pytest.raises(InputError, match="not evaluated") as info:  # a typo'd scorer would use real weights
        main(["evaluate", *base, *CLI_SCORERS, "--scorer-source", "imagereward=random"])
    assert info.value.parameter == "--scorer-source"
    with pytest.raises(InputError, match="not a checkpoint"):
        main(["evaluate", *base, *CLI_SCORERS, "--checkpoint", f"x={tiny_run.hpsv2}"])
    with pytest.raises(InputError, match="used twice"):
        main(["evaluate", *base, *CLI_SCORERS, "--checkpoint", f"round-00={tiny_run.round0_record}"])
    with pytest.raises(InputError, match="no saved config"):
        main(["evaluate", str(tiny_run.hpsv2), "--prompts", f"partiprompts:{tiny_run.parti}", *CLI_SCORERS,
              "--out", out])


def test_bad_image_is_a_clear_input_error(tiny_run, evaluated, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(evaluated.out, out)
    images = out / evaluated.entry("round-01", "partiprompts")["stage_dir"] / "images.parquet"
    table = read_table(images).to_pydict()
    table["png"][1] = b"\x89PNG\r\n\x1a\n truncated"
    pq.write_table(pa.table(table), images)
    # as if the stage had written the bad image itself: its record vouches for the files (a stage whose
    # files changed after it finished is set aside and recomputed instead, see tests/run/test_runner.py)
    record = images.parent.with_suffix(".json")
    entry = json.loads(record.read_text())
    entry["data"]["sha256"] = sha256_tree(images.parent)
    record.write_text(json.dumps(entry))
    with pytest.raises(InputError, match="cannot decode the image") as info:
        evaluate_cli(tiny_run, out)
    assert (Path(info.value.file), info.value.row, info.value.column) == (images, 1, "png")


def _record(label: str, metrics: dict[str, float]) -> EvalRecord:
    artifact = Artifact(path=f"{label}/scores.parquet", sha256="0")
    return EvalRecord(label=label, scores=artifact, summary=artifact, metrics=metrics)


def test_table_marks_missing_evaluations_and_picks_the_category_metric():
    evaluations = [
        ModelEvaluation("base", "hpsv2_benchmark", _record("base", {
            "aesthetic": 5.0, "aesthetic_ci95": 0.1, "hpsv2": 27.0, "hpsv2_ci95": 0.2, "hpsv2@anime": 27.5,
            "hpsv2@photo": 26.5, "aesthetic@anime": 5.1, "aesthetic@photo": 4.9})),
        ModelEvaluation("base", "parti", _record("base", {"aesthetic": 5.2, "aesthetic_ci95": float("nan")})),
        ModelEvaluation("round-01", "hpsv2_benchmark", _record("round-01", {
            "aesthetic": 5.5, "aesthetic_ci95": 0.1, "hpsv2": 28.0, "hpsv2_ci95": 0.2, "hpsv2@anime": 28.5,
            "hpsv2@photo": 27.5, "aesthetic_win_rate": 0.75, "hpsv2_win_rate": 1.0})),
    ]
    table = metrics_table(evaluations)
    assert [c.name for c in table.columns] == [
        "hpsv2_benchmark/aesthetic", "hpsv2_benchmark/hpsv2", "hpsv2_benchmark/hpsv2@anime",
        "hpsv2_benchmark/hpsv2@photo", "parti/aesthetic"]
    lines = to_markdown(table).splitlines()
    assert lines[2].split("|")[-2].strip() == "5.2000"  # one image: no CI to show
    assert lines[3].split("|")[-2].strip() == "–"  # round-01 was not evaluated on parti
    assert lines[3].split("|")[3].strip() == "28.0000 ± 0.2000"
    by_aesthetic = metrics_table(evaluations, TableLayout(category_metric="aesthetic"))
    assert [c.name for c in by_aesthetic.columns][2:4] == ["hpsv2_benchmark/aesthetic@anime",
                                                          "hpsv2_benchmark/aesthetic@photo"]
    with pytest.raises(InputError, match="was not evaluated"):
        metrics_table(evaluations, TableLayout(category_metric="pickscore"))
    wins = win_rate_table(evaluations, "base")
    assert wins.models == ("round-01",)
    assert [c.strip() for c in to_markdown(wins).splitlines()[2].split("|")[2:-1]] == ["0.750", "1.000", "–"]
