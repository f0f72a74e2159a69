"""Flow tests run against a real Prefect API: one temporary SQLite server for the whole session
(its start-up migrates a fresh database, 15-20 s on two cores), scoped to this folder only."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture(scope="session", autouse=True)
def prefect_api(tmp_path_factory):
    from prefect.settings import PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_HOME: str(tmp_path_factory.mktemp("prefect-home"))}):
        with prefect_test_harness(server_startup_timeout=180):
            yield


TINY_WORLD = {
    "rounds": 1,
    "prompts.per_round": [8],
    "generate.n_candidates": 4,
    "generate.prompts_per_shard": 2,
    "generate.sampler.steps": 4,
    "reward.k_draws": 2,
    "seed_data.seed_size": 16,
    "seed_train.max_steps": 2,
    "seed_train.effective_batch_pairs": 8,
    "seed_train.micro_batch_pairs": 8,
    "round_train.max_steps": 2,
    "round_train.effective_batch_pairs": 8,
    "round_train.micro_batch_pairs": 8,
    "eval.max_prompts": 4,
    "eval.seeds_per_prompt": 1,
    "eval.sampler.steps": 4,
    "eval.grid_prompts": 2,
}
"""The embedded world at a size that runs in seconds: every stage, real files, real Prefect."""


@pytest.fixture(scope="session")
def real_arch_models(tmp_path_factory):
    """Random-weight folders of the real SD1.5 and SDXL (with the fp16-fix VAE) and of CLIP ViT-L/14,
    written by ``sail models random`` in processes of their own, whose time and peak memory are printed.
    ``SAIL_REAL_ARCH_MODELS=<folder>`` reuses (or keeps) the folders there instead of temporary ones."""
    import shutil
    import sys
    from pathlib import Path

    from .real_arch import RealArchModels, run_measured, write_aesthetic_head

    keep = os.environ.get("SAIL_REAL_ARCH_MODELS")
    root = Path(keep) if keep else tmp_path_factory.mktemp("real-arch-models")
    root.mkdir(parents=True, exist_ok=True)
    sail = str(Path(sys.executable).parent / "sail")
    jobs = {"sd15": ["--family", "sd15", "--out", str(root / "sd15")],
            "sdxl": ["--family", "sdxl", "--out", str(root / "sdxl"), "--vae-out", str(root / "sdxl-vae-fp16-fix")],
            "clip-vit-large-patch14": ["--family", "clip-vit-large-patch14", "--out", str(root / "clip")]}
    for name, args in jobs.items():
        if Path(args[3]).exists():
            print(f"\nrandom {name}: reusing {args[3]}")
            continue
        code, seconds, peak, _ = run_measured([sail, "models", "random", *args], root / f"{name}.log")
        assert code == 0, (root / f"{name}.log").read_text()[-3000:]
        print(f"\nrandom {name}: {seconds:.1f} s, peak RSS {peak / 2**30:.2f} GiB (sail models random, "
              f"{os.environ.get('OMP_NUM_THREADS', 'all')} thread(s))")
    head = root / "aesthetic_head.safetensors"
    if not head.exists():
        write_aesthetic_head(head)
    yield RealArchModels(root / "sd15", root / "sdxl", root / "sdxl-vae-fp16-fix", root / "clip", head)
    if not keep:  # 9 GB of weights
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def real_arch_data(tmp_path_factory):
    from .real_arch import write_data

    return write_data(tmp_path_factory.mktemp("real-arch-data"))
