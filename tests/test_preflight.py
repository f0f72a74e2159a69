"""The preflight: every problem that would stop a run is found before any stage, one clear line each."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from sail_core.config import SailConfig
from sail_core.errors import InputError
from sail_core.models.bundle import load_bundle
from sail_core.preflight import _hub_unreachable, preflight, preflight_problems
from tests.builders import standard_pickapic, tiny_config

SDXL_ID = "stabilityai/stable-diffusion-xl-base-1.0"


@pytest.fixture()
def offline_empty_cache(tmp_path, monkeypatch):
    """The Hub unreachable (HF_HUB_OFFLINE=1, as in every test) and a Hugging Face cache of our own."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    _hub_unreachable.cache_clear()
    yield cache
    _hub_unreachable.cache_clear()


@pytest.fixture()
def data(tmp_path):
    pairs = standard_pickapic(tmp_path / "pairs.parquet")
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(f"prompt number {i}" for i in range(10)) + "\n")
    return pairs, pool


def _config(family: str, folder: Path, data, **overrides) -> SailConfig:
    return tiny_config(family, folder, *data, **overrides)


def test_a_complete_configuration_has_no_problem(tiny_sdxl, data, tmp_path):
    assert preflight_problems(_config("sdxl", tiny_sdxl, data), str(tmp_path / "runs" / "a")) == []
    assert (tmp_path / "runs" / "a").is_dir() and not list((tmp_path / "runs" / "a").iterdir())  # probe removed


def test_a_folder_missing_components_is_one_line_naming_each_missing_file(tiny_sdxl, data, tmp_path):
    folder = tmp_path / "sdxl"
    shutil.copytree(tiny_sdxl, folder)
    shutil.rmtree(folder / "tokenizer_2")
    (folder / "scheduler" / "scheduler_config.json").unlink()
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    problems = preflight_problems(_config("sdxl", folder, data), str(tmp_path / "runs"))
    assert problems == [
        f"model.source: the folder {folder} is not a complete sdxl diffusers model: missing "
        "unet/diffusion_pytorch_model.safetensors, scheduler/scheduler_config.json, "
        "tokenizer_2/vocab.json + merges.txt; download the model again, or point model.source at a complete folder"]


def test_a_missing_vae_folder_is_reported_and_the_main_folder_need_not_hold_a_vae(tiny_sdxl, data, tmp_path):
    folder = tmp_path / "sdxl"
    shutil.copytree(tiny_sdxl, folder)
    shutil.rmtree(folder / "vae")
    config = _config("sdxl", folder, data, **{"model.vae_source": str(tmp_path / "no-such-vae")})
    problems = preflight_problems(config, str(tmp_path / "runs"))
    assert len(problems) == 1 and problems[0].startswith(f"model.vae_source: {tmp_path / 'no-such-vae'} is neither a "
                                                         "folder nor a Hugging Face Hub id")
    config = _config("sdxl", folder, data, **{"model.vae_source": str(tiny_sdxl / "vae")})
    assert preflight_problems(config, str(tmp_path / "runs")) == []


def test_a_folder_missing_a_file_fails_to_load_as_bad_input_not_as_a_retryable_os_error(tiny_sd15, data, tmp_path):
    folder = tmp_path / "sd15"
    shutil.copytree(tiny_sd15, folder)
    (folder / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(InputError, match=r"parameter 'model.source': cannot load the model from the folder .*"
                                         r"scheduler_config.json"):
        load_bundle(_config("sd15", folder, data).model)


def test_missing_data_files_are_named_with_how_to_provide_them(tiny_sd15, data, tmp_path):
    config = _config("sd15", tiny_sd15, data, **{
        "seed_data.pairs": [str(tmp_path / "pickapic" / "train-*.parquet")],
        "prompts.files": [str(tmp_path / "rounds.txt")],
        "eval.prompts": [f"partiprompts:{tmp_path / 'PartiPrompts.tsv'}"],
    })
    problems = preflight_problems(config, str(tmp_path / "runs"))
    assert len(problems) == 3
    assert problems[0].startswith(f"seed_data.pairs: no file matches {tmp_path / 'pickapic' / 'train-*.parquet'}: "
                                  "download the Pick-a-Pic v2 train shards")
    assert problems[1].startswith(f"prompts.files: {tmp_path / 'rounds.txt'} does not exist: give prompt files")
    assert problems[2].startswith(f"eval.prompts (partiprompts:{tmp_path / 'PartiPrompts.tsv'}): ")
    assert str(tmp_path / "PartiPrompts.tsv") in problems[2]


def test_seed_files_without_the_pickapic_columns_are_rejected_from_their_schema(tiny_sd15, data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"caption": ["a"], "jpg_0": [b""], "label_0": [1.0]}), wrong)
    problems = preflight_problems(_config("sd15", tiny_sd15, data, **{"seed_data.pairs": [str(wrong)]}),
                                  str(tmp_path / "runs"))
    assert problems == [f"seed_data.pairs: {wrong} lacks the Pick-a-Pic v2 columns ['jpg_1', 'label_1']: "
                        "give files in its schema"]


def test_a_hub_id_not_in_the_cache_with_the_hub_unreachable(offline_empty_cache, tiny_sdxl, data, tmp_path):
    config = _config("sdxl", tiny_sdxl, data, **{"model.source": SDXL_ID, "model.local_files_only": False})
    assert preflight_problems(config, str(tmp_path / "runs")) == [
        f"model.source: {SDXL_ID} is not in the local cache and the Hub is unreachable (HF_HUB_OFFLINE=1): "
        f"download it (hf download {SDXL_ID}), or set model.source to a folder holding a downloaded sdxl "
        "diffusers model"]
    config = _config("sdxl", tiny_sdxl, data, **{"model.source": SDXL_ID, "model.local_files_only": True})
    (problem,) = preflight_problems(config, str(tmp_path / "runs"))
    assert problem.startswith(f"model.source: {SDXL_ID} is not in the local cache (model_index.json, "
                              "unet/config.json, unet/diffusion_pytorch_model.safetensors")
    assert problem.endswith("and model.local_files_only is set: download it "
                            f"(hf download {SDXL_ID}), or set model.source to a folder")


def test_a_hub_id_whose_files_are_in_the_local_cache_passes_offline(offline_empty_cache, tiny_sdxl, data, tmp_path):
    # the layout huggingface_hub writes: refs/main names the snapshot holding the repository's files
    repo = offline_empty_cache / f"models--{SDXL_ID.replace('/', '--')}"
    commit = "462165984030d82259a11f4367a4eed129e94a7b"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_sdxl, repo / "snapshots" / commit)
    config = _config("sdxl", tiny_sdxl, data, **{"model.source": SDXL_ID})
    assert preflight_problems(config, str(tmp_path / "runs")) == []


def test_scorer_weights_missing_offline(offline_empty_cache, tiny_sd15, data, tmp_path):
    config = _config("sd15", tiny_sd15, data, **{
        "eval.scorers": ["pickscore", "aesthetic", "clipscore"],
        "eval.scorer_sources": {"aesthetic": str(tmp_path / "head.pth"), "clipscore": "random"},
        "eval.scorer_options": {"aesthetic": {"clip": str(tiny_sd15)}},
    })
    assert preflight_problems(config, str(tmp_path / "runs")) == [
        "eval.scorer_sources.pickscore: yuvalkirstain/PickScore_v1 is not in the local cache and the Hub is "
        "unreachable (HF_HUB_OFFLINE=1): download it (hf download yuvalkirstain/PickScore_v1), or set "
        "eval.scorer_sources.pickscore to a local copy",
        "eval.scorer_options.pickscore.processor: laion/CLIP-ViT-H-14-laion2B-s32B-b79K is not in the local cache "
        "and the Hub is unreachable (HF_HUB_OFFLINE=1): download it (hf download "
        "laion/CLIP-ViT-H-14-laion2B-s32B-b79K), or set eval.scorer_options.pickscore.processor to a local copy",
        f"eval.scorer_sources.aesthetic: {tmp_path / 'head.pth'} does not exist: give the scorer's downloaded "
        "weights (a file or folder), or a Hub id",
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_requested_on_a_machine_without_it(tiny_sd15, data, tmp_path):
    problems = preflight_problems(_config("sd15", tiny_sd15, data, **{"runtime.device": "cuda"}),
                                  str(tmp_path / "runs"))
    assert len(problems) == 1
    assert problems[0].startswith("runtime.device: cuda is requested but this machine has no CUDA device (torch ")
    assert problems[0].endswith("run on a GPU machine (a GPU worker of the pool), or set runtime.device=cpu")


def test_a_run_directory_that_cannot_be_written(tiny_sd15, data, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the runs directory should be")
    problems = preflight_problems(_config("sd15", tiny_sd15, data), str(blocker / "run"))
    assert problems == [f"runs_dir: the run directory {blocker / 'run'} cannot be written (Not a directory): "
                        "choose a runs_dir this user can write to"]


def test_preflight_raises_one_input_error_with_a_line_per_problem(tiny_sd15, data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = _config("sd15", tmp_path / "no-model", data, **{"prompts.files": [str(tmp_path / "none.txt")]})
    with pytest.raises(InputError) as error:
        preflight(config, str(blocker / "run"))
    lines = str(error.value).splitlines()
    assert lines[0] == "the run cannot start (3 problem(s)):"
    assert [line.split(":")[0] for line in lines[1:]] == ["  - runs_dir", "  - model.source", "  - prompts.files"]


def test_more_training_processes_than_gpus_is_a_problem_unless_they_are_asked_to_run_on_the_cpu(tiny_sd15, data,
                                                                                                 tmp_path):
    assert not torch.cuda.is_available()  # this suite runs on CPU machines
    problems = preflight_problems(_config("sd15", tiny_sd15, data, **{"runtime.train_processes": 8}),
                                  str(tmp_path / "run"))
    assert problems == ["runtime.train_processes: 8 training processes need as many GPUs and this machine has none: "
                        "set runtime.train_processes=1 (or runtime.device=cpu)"]
    on_cpu = _config("sd15", tiny_sd15, data, **{"runtime.train_processes": 2, "runtime.device": "cpu"})
    assert preflight_problems(on_cpu, str(tmp_path / "run")) == []


def test_a_run_directory_inside_a_workers_temporary_clone_is_refused_in_one_line(tiny_sd15, data, tmp_path,
                                                                                  monkeypatch):
    import tempfile

    clone = tmp_path / "tmp1a2bprefect" / "repository"
    clone.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.chdir(clone)
    problems = preflight_problems(_config("sd15", tiny_sd15, data), "runs/smoke")
    assert problems == [
        f"runs_dir: the run directory {clone / 'runs' / 'smoke'} is inside this flow run's temporary directory "
        f"{clone.parent}, which the worker deletes when the run ends (nothing would resume): set SAIL_WORKDIR on the "
        "worker, or redeploy with prefect.yaml (it sets SAIL_DEPLOYED_FROM), or pass an absolute runs_dir or an "
        "s3:// URL"]
    assert not (clone / "runs").exists()  # refused before anything was written
    assert preflight_problems(_config("sd15", tiny_sd15, data), str(tmp_path / "runs" / "smoke")) == []
