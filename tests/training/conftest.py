"""A tiny SD1.5 with its seed pairs encoded, shared by the trainer tests of a module."""

from __future__ import annotations

import pytest

from sail_core.models.bundle import load_bundle
from sail_core.run.layout import RunLayout
from sail_core.run.stage import NoInputs
from sail_core.stages.seed import prepare_seed
from tests.builders import stage_ctx, standard_pickapic, tiny_config


@pytest.fixture(scope="module")
def seeded(tiny_sd15, tmp_path_factory):
    """(config, bundle, layout, seed record) of a run whose seed stage has run."""
    root = tmp_path_factory.mktemp("seeded")
    (root / "pool.txt").write_text("x\ny\n")
    config = tiny_config("sd15", tiny_sd15, standard_pickapic(root / "pap.parquet"), root / "pool.txt")
    layout = RunLayout(root / "run")
    seed = prepare_seed(stage_ctx(config, layout, "seed"), NoInputs())
    return config, load_bundle(config.model), layout, seed
