"""The real SD1.5 and SDXL architectures through the sail-loop flow on the CPU (``make real-arch``).

Each family runs seed DPO and one SAIL round on random-weight folders of the published architecture
(sizes and precision reduced as ``tests/flows/real_arch.py`` says), evaluates with CLIP score and the
LAION aesthetic predictor on their real architecture (CLIP ViT-L/14), and prints the time and peak
memory of every stage. Then every trained round is reloaded from the run directory and checked to
be the model the run recorded (its identity, which chains the weights' hashes) and to reproduce its
evaluation images and its round's rewards.
"""

from __future__ import annotations

import gc
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sail_core.config import SailConfig, load_config
from sail_core.evaluation.protocol import eval_items, generate_eval_images
from sail_core.io.tables import read_table
from sail_core.models.bundle import load_bundle
from sail_core.models.denoisers import load_policy
from sail_core.run.layout import Artifact, RunLayout
from sail_core.run.lineage import Lineage, ModelRef, trained_model
from sail_core.run.records import PromptsRecord
from sail_core.run.stage import StageContext
from sail_core.stages.evaluate import eval_prompts
from sail_core.stages.generate import GenerateInputs
from sail_core.stages.rank import RankInputs, rank_candidates

from .helpers import task_states
from .real_arch import overrides, report_cost, run_flow

pytestmark = [pytest.mark.flows, pytest.mark.real_arch]
STAGES = {"evaluate-base", "seed", "train-round-00", "evaluate-round-00", "prompts-round-01",
          "generate-round-01", "rank-round-01", "mix-round-01", "train-round-01", "evaluate-round-01"}


def _recorded_images(run_dir: Path, evaluation: dict) -> np.ndarray:
    table = read_table(run_dir / Path(evaluation["scores"]["path"]).parent / "images.parquet").to_pydict()
    return np.stack([np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) for png in table["png"]])


def _check_identities(run_dir: Path, models: list[ModelRef]) -> None:
    """The weights on disk are those the run recorded: each trained model's identity chains its init's
    identity with the hash of its saved weights (UNet folder, or newest adapter)."""
    for init, model in zip(models, models[1:]):
        checkpoint = model.checkpoint
        saved = checkpoint.weights if checkpoint.kind == "full" else checkpoint.adapters[-1]
        assert trained_model(checkpoint, Artifact.of(run_dir, run_dir / saved), init) == model, checkpoint.label


def _check_rounds_reproduce(config: SailConfig, run_dir: Path, result: dict) -> None:
    bundle = load_bundle(config.model)
    models = [ModelRef(checkpoint=m["checkpoint"], identity=m["identity"]) for m in result["models"]]
    labels = [m["label"] for m in result["models"]]  # the evaluations' labels, model by model
    assert labels == ["base", "round-00", "round-01"]
    _check_identities(run_dir, models)
    evaluations = {e["label"]: e for e in result["evaluations"]}
    items = eval_items(*eval_prompts(config), config.eval)
    for label, model in zip(labels[1:], models[1:]):
        denoisers = load_policy(config.model, run_dir, model.checkpoint)
        images = generate_eval_images(denoisers.policy, bundle, items, config.eval, denoisers.dtype)
        assert np.array_equal(images, _recorded_images(run_dir, evaluations[label])), label
        del denoisers
        gc.collect()
    # round 1 ranked its candidates with round-00 against its judge (``reward.reference``): the reloaded
    # models give the same rewards, and they are not zero (round-00 is not the base model)
    round_1 = result["rounds"][0]
    inputs = RankInputs(generation=GenerateInputs(prompts=PromptsRecord.model_validate(round_1["prompts"]),
                                                  policy=models[1]),
                        judge=Lineage(models=tuple(models[:2])).judge(config.reward.reference, 1))
    out = run_dir / "reproduced" / "rank"
    out.mkdir(parents=True)
    rank_candidates(StageContext(config, RunLayout(run_dir), out), inputs)
    recorded = read_table(run_dir / round_1["pairs"]["rewards"]["path"]).to_pydict()
    reproduced = read_table(out / "rewards.parquet").to_pydict()
    assert reproduced.keys() == recorded.keys()
    for column, values in recorded.items():
        assert reproduced[column] == values, column
    assert any(r != 0 for r in recorded["reward"])


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_real_architecture_runs_the_sail_loop_and_every_round_reloads(family, real_arch_models, real_arch_data,
                                                                     tmp_path):
    from prefect.settings import PREFECT_API_URL

    values = overrides(family, real_arch_models, real_arch_data)
    result, cost, flow_run_id = run_flow(family, family, tmp_path / "runs", values, tmp_path, PREFECT_API_URL.value())
    report_cost(cost)
    states = {name: state for name, state in task_states(flow_run_id).items() if not name.startswith("sail-round")}
    assert set(states) == STAGES and set(states.values()) == {"Completed"}
    config = load_config(family, values)
    assert (config.model.train_mode, config.round_train.optimizer) == (
        ("full", "adamw") if family == "sd15" else ("lora", "adafactor"))
    for evaluation in result["evaluations"]:  # the two scorers on CLIP ViT-L/14 scored every image
        assert {"clipscore", "aesthetic"} <= set(evaluation["metrics"]), evaluation["metrics"]
    _check_rounds_reproduce(config, Path(result["run_dir"]), result)
    _return_freed_memory()
    shutil.rmtree(result["run_dir"])  # SD1.5's full fine-tuning leaves 26 GB of checkpoints


def _return_freed_memory() -> None:
    """Give the freed heap back to the system before the next family's run needs it (glibc keeps it)."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass
