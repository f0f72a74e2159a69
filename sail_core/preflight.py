"""Preflight: before any stage runs, check that everything a run needs is there, in seconds.

A real run that lacks a file otherwise finds out hours in (a missing prompt file at the first round,
a diffusers folder without ``scheduler/scheduler_config.json`` at the first model load, retried as
if it were a network error). :func:`preflight` checks the model folder or Hub id (and the separate
VAE), every data path (seed pairs, prompt files, evaluation prompt sets, real-image sources), the
scorers' weights, the device and the run directory, and raises one :class:`InputError` with one line
per problem, each naming what is missing and how to provide it. It reads file headers, not data. On a
GPU it also checks that every stage's configured batch fits the device's memory (:func:`memory_problems`).
"""

from __future__ import annotations

import glob
import inspect
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sail_core.config import ModelConfig, SailConfig
from sail_core.errors import InputError
from sail_core.io.paths import local_path
from sail_core.models.architectures import ARCHITECTURES, Component
from sail_core.plan.gpus import Gpu

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Requirement:
    """A file a model folder must hold: any one of ``alternatives``, each a set of files that must all exist."""

    label: str
    alternatives: tuple[tuple[str, ...], ...]


def component_requirements(component: Component, variant: str | None = None) -> list[Requirement]:
    base = component.subfolder
    join = (lambda name: f"{base}/{name}") if base else (lambda name: name)
    if component.kind == "tokenizer":
        # what CLIPTokenizer.from_pretrained reads: the BPE files, or one tokenizer.json
        return [Requirement(join("vocab.json + merges.txt"),
                            ((join("vocab.json"), join("merges.txt")), (join("tokenizer.json"),)))]
    out = [Requirement(join(name), ((join(name),),)) for name in component.config_files]
    if component.has_weights:
        weights = component.weights_file(variant)
        out.append(Requirement(join(weights), ((join(weights),), (join(component.weights_index(variant)),))))
    return out


def model_requirements(config: ModelConfig) -> list[Requirement]:
    """What ``load_bundle`` and ``load_unet`` read from ``model.source`` for this family and codec."""
    arch = ARCHITECTURES[config.family]
    skip = {"vae"} if (config.codec == "pixel" or config.vae_source) else set()
    out: list[Requirement] = []
    if arch.model_index and config.codec == "vae":  # the embedded world's own folder has no pipeline index
        out.append(Requirement("model_index.json", (("model_index.json",),)))
    for component in arch.components:
        if component.subfolder not in skip:
            out += component_requirements(component, config.variant)
    return out


def vae_requirements() -> list[Requirement]:
    """What ``load_bundle`` reads from ``model.vae_source`` (one AutoencoderKL folder)."""
    return component_requirements(Component("", "vae"))


def _missing_in_folder(folder: Path, requirements: Iterable[Requirement]) -> list[str]:
    return [r.label for r in requirements
            if not any(all((folder / name).is_file() for name in files) for files in r.alternatives)]


def _looks_like_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and not source.startswith((".", "/", "~"))


# --- the Hugging Face Hub ---------------------------------------------------------------------------

def _missing_in_cache(repo: str, requirements: Iterable[Requirement], revision: str | None) -> list[str]:
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, name, revision=revision), str)

    return [r.label for r in requirements if not any(all(cached(n) for n in files) for files in r.alternatives)]


def _repo_in_cache(repo: str) -> bool:
    """Any snapshot of ``repo`` in the local cache (for scorers, whose files vary with the source)."""
    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


@lru_cache(maxsize=1)
def _hub_unreachable() -> str | None:
    """Why the Hub cannot be used from here (None when it answers). Asked once per process."""
    from huggingface_hub import constants, get_session, is_offline_mode

    if is_offline_mode():
        return "HF_HUB_OFFLINE=1"
    try:
        get_session().head(constants.ENDPOINT, timeout=10)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means unreachable
        return f"{type(exc).__name__} connecting to {constants.ENDPOINT}"
    return None


def _hub_problem(repo: str, parameter: str, missing: list[str], local_files_only: bool, what: str) -> str | None:
    if not missing:
        return None
    if local_files_only:
        return (f"{parameter}: {repo} is not in the local cache ({', '.join(missing)} missing) and "
                f"model.local_files_only is set: download it (hf download {repo}), or set {parameter} to a folder")
    why = _hub_unreachable()
    if why is None:
        return None  # downloaded on first use
    return (f"{parameter}: {repo} is not in the local cache and the Hub is unreachable ({why}): "
            f"download it (hf download {repo}), or set {parameter} to a folder holding {what}")


# --- the checks ------------------------------------------------------------------------------------

def _model_source_problems(source: str, parameter: str, requirements: list[Requirement], what: str,
                           config: ModelConfig) -> list[str]:
    path = Path(source).expanduser()
    if path.is_dir():
        missing = _missing_in_folder(path, requirements)
        if missing:
            return [f"{parameter}: the folder {path} is not a complete {what}: missing {', '.join(missing)}; "
                    f"download the model again, or point {parameter} at a complete folder"]
        return []
    if not _looks_like_hub_id(source):
        return [f"{parameter}: {source} is neither a folder nor a Hugging Face Hub id: give the folder of "
                f"a downloaded {what}, or its Hub id"]
    problem = _hub_problem(source, parameter, _missing_in_cache(source, requirements, config.revision),
                           config.local_files_only, f"a downloaded {what}")
    return [problem] if problem else []


def model_problems(config: ModelConfig) -> list[str]:
    from sail_core.models.bundle import resolve_source

    what = f"{config.family} diffusers model" if config.codec == "vae" else f"{config.family}-layout model"
    problems = _model_source_problems(resolve_source(config), "model.source", model_requirements(config), what,
                                      config)
    if config.vae_source and config.codec == "vae":
        problems += _model_source_problems(local_path(config.vae_source), "model.vae_source", vae_requirements(),
                                           "AutoencoderKL (config.json + diffusion_pytorch_model.safetensors)",
                                           config.model_copy(update={"revision": None}))
    return problems


def _input_problem(parameter: str, check) -> list[str]:
    try:
        check()
    except InputError as exc:
        return [f"{parameter}: {exc}"]
    except OSError as exc:
        return [f"{parameter}: {exc}"]
    return []


def data_problems(config: SailConfig) -> list[str]:
    from sail_core.data.prompt_sets import prompt_set_from_spec

    problems = []
    for pattern in config.seed_data.pairs:
        files = sorted(glob.glob(local_path(pattern)))
        if not files:
            problems.append(f"seed_data.pairs: no file matches {pattern}: download the Pick-a-Pic v2 train shards "
                            "(yuvalkirstain/pickapic_v2, data/train-*.parquet) or give Parquet files in its schema, "
                            "e.g. overrides {\"seed_data.pairs\": [\"/data/pickapic_v2/train-*.parquet\"]}")
        for file in files:
            problems += _pickapic_schema_problems(Path(file))
    for file in config.prompts.files:
        if not Path(local_path(file)).is_file():
            problems.append(f"prompts.files: {file} does not exist: give prompt files (one prompt per line, or "
                            "Parquet with a caption/prompt column), or leave prompts.files empty to draw the "
                            "rounds' prompts from the seed data")
    for spec in config.eval.prompts:
        problems += _input_problem(f"eval.prompts ({spec})",
                                   lambda s=spec: prompt_set_from_spec(s))
    if config.mixup.real_generated > 0 or config.mixup.real_perturbed > 0:
        from sail_core.stages.real import real_files

        problems += _input_problem("real.sources", lambda: real_files(config))
    return problems


def _pickapic_schema_problems(file: Path) -> list[str]:
    from sail_core.data.pickapic import REQUIRED_COLUMNS
    from sail_core.io.tables import read_schema

    try:
        names = set(read_schema(file).names)
    except InputError as exc:
        return [f"seed_data.pairs: {exc}"]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        return [f"seed_data.pairs: {file} lacks the Pick-a-Pic v2 columns {missing}: give files in its schema"]
    return []


def scorer_problems(config: SailConfig) -> list[str]:
    """Each scorer's weights: a local path that exists, or a Hub id that is cached or reachable."""
    from sail_core.evaluation.scorers import RANDOM_SOURCE, SCORERS, canonical_name

    problems = []
    for name in config.eval.scorers:
        try:
            key = canonical_name(name)
        except InputError as exc:
            problems.append(f"eval.scorers: {exc}")
            continue
        if key not in SCORERS:  # a registered plugin (e.g. the embedded world's judge): it loads its own files
            continue
        spec = SCORERS[key]
        source = config.eval.scorer_sources.get(name)
        if source == RANDOM_SOURCE:
            continue
        defaults = inspect.signature(spec.build).parameters
        given = {**config.eval.scorer_options.get(name, {}), **({spec.source_parameter: source} if source else {})}
        for parameter in (spec.source_parameter, *spec.options):
            value = given.get(parameter, defaults[parameter].default if parameter in defaults else None)
            if not isinstance(value, str | Path) or value == inspect.Parameter.empty:
                continue
            where = (f"eval.scorer_sources.{name}" if parameter == spec.source_parameter
                     else f"eval.scorer_options.{name}.{parameter}")
            value = str(value)
            if Path(value).expanduser().exists():
                continue
            if not _looks_like_hub_id(value):
                problems.append(f"{where}: {value} does not exist: give the scorer's downloaded weights "
                                "(a file or folder), or a Hub id")
                continue
            if _repo_in_cache(value):
                continue
            why = _hub_unreachable()
            if why is not None:
                problems.append(f"{where}: {value} is not in the local cache and the Hub is unreachable ({why}): "
                                f"download it (hf download {value}), or set {where} to a local copy")
    return problems


def cuda_device_problems(wanted: str, field: str, gpu_hint: str = " (a GPU worker of the pool)") -> list[str]:
    """What keeps the device ``wanted`` (set by ``field``) from being used here; empty for a CPU."""
    import torch

    if not wanted.startswith("cuda"):
        return []
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU-only build")
    if available == 0:
        return [f"{field}: {wanted} is requested but this machine has no CUDA device ({build}): run on a "
                f"GPU machine{gpu_hint}, or set {field}=cpu"]
    index = int(wanted.split(":", 1)[1]) if ":" in wanted else 0
    if index >= available:
        return [f"{field}: {wanted} is requested but this machine has {available} CUDA device(s): "
                f"choose cuda:0..cuda:{available - 1}"]
    return []


def device_problems(config: SailConfig) -> list[str]:
    import torch

    problems = cuda_device_problems(config.runtime.device, "runtime.device")
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    processes = config.runtime.train_processes
    # explicit runtime.device=cpu trains in that many CPU processes (gloo); otherwise each process takes a GPU
    if processes > 1 and config.runtime.device != "cpu" and available < processes and not problems:
        has = f"{available}" if available else "none"
        fix = f"runtime.train_processes={max(available, 1)}" + ("" if available else " (or runtime.device=cpu)")
        problems.append(f"runtime.train_processes: {processes} training processes need as many GPUs and this "
                        f"machine has {has}: set {fix}")
    return problems


def memory_problems(config: SailConfig, device: Gpu | None = None) -> list[str]:
    """Stages whose configured batch (micro-batch, sampler or reward batch) cannot fit the GPU the run uses,
    one line each naming the setting, the estimate, the GPU's memory and the largest batch that fits
    (``sail_core.plan``: the stage traced on fake tensors of the real architecture). ``device`` is the GPU
    to check against; by default the CUDA device the run will use. Skipped on a CPU (and for the embedded
    world, which has no GPU stage to size)."""
    from sail_core.plan.estimate import fit_problems

    if config.model.codec != "vae":
        return []
    if device is None:
        import torch

        wanted = config.runtime.device
        if not wanted.startswith(("cuda", "auto")) or not torch.cuda.is_available():
            return []
        index = int(wanted.split(":", 1)[1]) if ":" in wanted else 0
        if index >= torch.cuda.device_count():
            return []  # device_problems says so
        from sail_core.plan.gpus import detect

        props = torch.cuda.get_device_properties(index)
        device = detect(props.name, props.total_memory)
    return fit_problems(config, device, gpus=config.runtime.train_processes)


def run_dir_problems(location: str) -> list[str]:
    """The run directory can be created and written (a remote run: its local working copy and the remote)."""
    from sail_core.io.remote import is_url

    if is_url(location):
        from fsspec.core import url_to_fs

        try:
            fs, root = url_to_fs(location)
            probe = f"{root.rstrip('/')}/.preflight-{uuid.uuid4().hex}"
            fs.makedirs(root, exist_ok=True)
            fs.pipe_file(probe, b"")
            fs.rm_file(probe)
        except Exception as exc:  # noqa: BLE001 - every filesystem raises its own errors
            return [f"runs_dir: cannot write to {location} ({type(exc).__name__}: {exc}): check the URL and "
                    "credentials, or use a local runs_dir"]
        return []
    path = Path(location.removeprefix("file://")).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".preflight-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return [f"runs_dir: the run directory {path} cannot be written ({exc.strerror or exc}): choose a runs_dir "
                "this user can write to"]
    return []


def preflight_problems(config: SailConfig, run_location: str) -> list[str]:
    from sail_core.run.workdir import temporary_clone_problem

    in_clone = temporary_clone_problem(run_location)
    run_dir = [in_clone] if in_clone else run_dir_problems(run_location)
    problems = [*run_dir, *device_problems(config), *model_problems(config.model), *data_problems(config),
                *scorer_problems(config)]
    device = [p for p in problems if p.startswith(("runtime.device", "runtime.train_processes"))]
    return problems if device else [*problems, *memory_problems(config)]


def preflight(config: SailConfig, run_location: str) -> None:
    """Raise one :class:`InputError` listing every problem (one line each) that would stop the run."""
    problems = preflight_problems(config, run_location)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise InputError(f"the run cannot start ({len(problems)} problem(s)):\n{lines}")


__all__ = ["Requirement", "memory_problems", "model_requirements", "preflight", "preflight_problems"]
