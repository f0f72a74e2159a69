"""Pretraining the world's base model on rendered "web data", reproducibly from a seed.

Plain denoising training (v-prediction MSE, see ``model``) of the UNet and the text encoder together, on fresh
batches from :func:`sail_core.world.render.sample_batch`; 10% of prompts are dropped to "" so the
model also learns the unconditional distribution that classifier-free guidance needs. An
exponential moving average of the weights is what gets saved. The base model learns the broad
distribution of web data: every size, position, noise level and blur, since captions never say
which the hidden human prefers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sail_core.algorithm.noising import add_noise, training_target
from sail_core.errors import InputError
from sail_core.io.atomic import write_text
from sail_core.models.tokenizer import cached_clip_tokenizer
from sail_core.preflight import cuda_device_problems
from sail_core.training.step_checkpoints import (
    TrainingState,
    load_checkpoint,
    load_extra_tensors,
    newest_good_checkpoint,
    save_checkpoint,
)
from sail_core.world.grammar import UnsaidProbabilities
from sail_core.world.model import (
    TEXT_LENGTH,
    WEIGHT_FILES,
    Architecture,
    build_scheduler,
    build_text_encoder,
    build_unet,
    load_weights,
    save_world_model,
)
from sail_core.world.render import sample_batch


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 4800
    batch_size: int = 96
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.999
    p_uncond: float = 0.1
    seed: int = 0
    threads: int = 1
    p_unsaid: float | UnsaidProbabilities = 0.5
    """Probability that a training caption leaves each optional attribute unsaid (one for all, or each its own)."""
    architecture: Architecture = Architecture()
    high_noise_share: float = 0.0
    """Share of each batch whose timesteps are drawn from ``[high_noise_from, 1000)`` instead of all of them.
    Where an object sits is visible in the noisy image down to ᾱ ≈ 0.01, so only the last few dozen
    timesteps make the model read a position word from the text; uniform timesteps give it ~5% of the batch."""
    high_noise_from: int = 950
    init: str | None = None
    """A world model folder to continue from (its weights; optimizer and EMA start fresh), or None for
    random initialisation from ``seed``."""
    device: str = "cpu"
    """Where the steps run ("cuda" on a GPU). The batches and the noise are drawn on the CPU from the seed
    whatever the device, so a GPU run trains on the same images, timesteps and noise as a CPU run."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.high_noise_share <= 1.0:
            raise InputError(f"must be in [0, 1], got {self.high_noise_share!r}",
                             parameter="high_noise_share")
        if not 0 <= self.high_noise_from < 1000:
            raise InputError(f"must be a timestep in [0, 1000), got {self.high_noise_from!r}",
                             parameter="high_noise_from")
        if self.init is not None and not (Path(self.init) / "unet").is_dir():
            raise InputError("not a world model folder (no unet/ in it)", file=self.init)



class Ema:
    def __init__(self, modules: list[torch.nn.Module], decay: float) -> None:
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))  # short memory early, while weights move fast
        for shadow, param in zip(self.shadow, self.params):
            shadow.lerp_(param.detach(), 1 - decay)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        for shadow, param in zip(self.shadow, self.params):
            param.copy_(shadow)


def _learning_rate(config: PretrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to zero at ``config.steps``."""
    warmup = min(1.0, (step + 1) / config.warmup_steps)
    return config.learning_rate * warmup * 0.5 * (1 + math.cos(math.pi * step / config.steps))


def _identity(config: PretrainConfig) -> dict:
    """What a checkpoint must share with the config resuming it (threads and device change last bits
    only), as JSON reads it back."""
    return json.loads(json.dumps({k: v for k, v in asdict(config).items() if k not in ("threads", "device")}))


class _Checkpoints:
    """Step checkpoints of one pretraining, so a killed run continues where it stopped, exactly.

    Each holds the weights, AdamW's state, the EMA's shadow and both random generators' states (the
    numpy one draws the batches, the torch one the noise and timesteps): a run resumed from step s
    takes the same steps as one never stopped (tested byte for byte at one thread count)."""

    def __init__(self, folder: Path, config: PretrainConfig, every: int) -> None:
        self.folder, self.config, self.every = folder, config, every
        identity_file = folder / "config.json"
        if identity_file.exists():
            saved = json.loads(identity_file.read_text())
            identity = _identity(config)
            changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
            if changed:
                raise InputError(f"these checkpoints were made with another pretraining config (differs in "
                                 f"{', '.join(changed)}); pass another --checkpoint-dir or the same settings",
                                 file=identity_file)
        else:
            write_text(identity_file, json.dumps(_identity(config), indent=2))

    def resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ema: Ema,
               rng: np.random.Generator, generator: torch.Generator) -> tuple[int, list[dict]]:
        resumable = newest_good_checkpoint(self.folder)
        for line in resumable.describe():
            logging.getLogger(__name__).warning("%s", line)
        if resumable.checkpoint is None:
            return 0, []
        state = load_checkpoint(resumable.checkpoint, model, optimizer)
        tensors = load_extra_tensors(resumable.checkpoint)
        with torch.no_grad():
            for i, shadow in enumerate(ema.shadow):
                shadow.copy_(tensors[f"ema/{i}"])
        generator.set_state(tensors["torch_generator"])
        rng.bit_generator.state = state.extra["numpy_generator"]
        return state.step, state.metrics

    def save(self, step: int, history: list[dict], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             ema: Ema, rng: np.random.Generator, generator: torch.Generator) -> None:
        if step % self.every and step != self.config.steps:
            return
        extra = {f"ema/{i}": shadow for i, shadow in enumerate(ema.shadow)}
        extra["torch_generator"] = generator.get_state()
        state = TrainingState(step, {}, history, {"numpy_generator": rng.bit_generator.state})
        save_checkpoint(self.folder, model, optimizer, state, keep=1, extra_tensors=extra)


@dataclass
class _Training:
    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    scheduler: object
    model: torch.nn.Module
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    ema: Ema
    rng: np.random.Generator
    generator: torch.Generator


def _timesteps(config: PretrainConfig, total: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform timesteps, a ``high_noise_share`` of them redrawn from the highest noise levels. Nothing extra
    is drawn at share 0, so the shipped recipe's random stream is unchanged."""
    timesteps = torch.randint(0, total, (n,), generator=generator)
    if not config.high_noise_share:
        return timesteps
    high = torch.rand(n, generator=generator) < config.high_noise_share
    return torch.where(high, torch.randint(config.high_noise_from, total, (n,), generator=generator), timesteps)


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"not a torch device: {name!r} (cpu, cuda, cuda:1, ...)", parameter="device") from exc
    for problem in cuda_device_problems(name, "--device", gpu_hint=""):
        raise InputError(problem)
    return device


@contextmanager
def _torch_settings_restored() -> Iterator[None]:
    """Put back the process-wide torch settings ``_start`` changes (threads, deterministic algorithms,
    the global random state): a caller's later work must not run on a pretraining's settings."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    rng_state = torch.random.get_rng_state()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.random.set_rng_state(rng_state)


def _start(config: PretrainConfig) -> _Training:
    """The models, optimizer, EMA and random generators of step 0, from ``config.seed``."""
    torch.set_num_threads(config.threads)
    on_cpu = _device(config.device).type == "cpu"
    if not on_cpu:
        # cuBLAS is deterministic only with a fixed workspace, which must be set before CUDA starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # exact on the CPU (resume is tested byte for byte); on a GPU a kernel without a deterministic
    # version (some backward passes) warns instead of stopping the run
    torch.use_deterministic_algorithms(True, warn_only=not on_cpu)
    torch.manual_seed(config.seed)
    arch = config.architecture
    unet, text_encoder = build_unet(arch), build_text_encoder(arch)
    if config.init is not None:
        load_weights(Path(config.init), unet, text_encoder)
    unet, text_encoder = unet.to(config.device), text_encoder.to(config.device)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    model = torch.nn.ModuleDict({"unet": unet, "text_encoder": text_encoder})
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    return _Training(unet, text_encoder, build_scheduler(arch), model, params, optimizer,
                     Ema([unet, text_encoder], config.ema_decay), np.random.default_rng(config.seed),
                     torch.Generator().manual_seed(config.seed))


def _init_provenance(config: PretrainConfig) -> dict:
    """What the continued-from model was (its own provenance and its weights' SHA-256), so a continued
    pretraining names its whole recipe even after its init folder is overwritten by the result."""
    if config.init is None:
        return {}
    folder = Path(config.init)
    provenance = folder / "provenance.json"
    weights = {part: hashlib.sha256((folder / name).read_bytes()).hexdigest() for part, name in WEIGHT_FILES.items()}
    return {"init_provenance": json.loads(provenance.read_text()) if provenance.exists() else None,
            "init_sha256": weights}


def export_checkpoint(config: PretrainConfig, checkpoint_dir: str | Path, out_dir: str | Path,
                      overwrite: bool = False) -> Path:
    """The EMA weights of the newest step checkpoint as a model folder, to look at a pretraining mid-way."""
    with _torch_settings_restored():
        return _export_checkpoint(config, checkpoint_dir, out_dir, overwrite)


def _export_checkpoint(config: PretrainConfig, checkpoint_dir: str | Path, out_dir: str | Path,
                       overwrite: bool) -> Path:
    t = _start(config)
    checkpoints = _Checkpoints(Path(checkpoint_dir), config, 1)
    step, history = checkpoints.resume(t.model, t.optimizer, t.ema, t.rng, t.generator)
    if not step:
        raise InputError("no step checkpoint to export", file=checkpoint_dir)
    t.ema.copy_to_params()
    provenance = {"command": "sail world pretrain --export-checkpoint", "config": asdict(config),
                  "step": step, "seconds": history[-1]["seconds"], "torch": torch.__version__,
                  **_init_provenance(config)}
    return save_world_model(out_dir, t.unet.eval(), t.text_encoder.eval(), t.scheduler, provenance, overwrite=overwrite)


def pretrain(config: PretrainConfig, out_dir: str | Path, tokenizer_dir: str | Path,
             on_step: Callable[[int, float], None] | None = None, overwrite: bool = False,
             checkpoint_dir: str | Path | None = None, checkpoint_every: int = 100) -> Path:
    """Pretrain from ``config.seed`` and save the EMA weights to ``out_dir``. With ``checkpoint_dir``,
    every ``checkpoint_every`` steps are checkpointed there and a rerun continues from the last one."""
    with _torch_settings_restored():
        return _pretrain(config, out_dir, tokenizer_dir, on_step, overwrite, checkpoint_dir, checkpoint_every)


def _pretrain(config: PretrainConfig, out_dir: str | Path, tokenizer_dir: str | Path,
              on_step: Callable[[int, float], None] | None, overwrite: bool,
              checkpoint_dir: str | Path | None, checkpoint_every: int) -> Path:
    t = _start(config)
    origin = _init_provenance(config)  # read now: ``out_dir`` may be the init folder itself
    unet, text_encoder, scheduler, model, params = t.unet, t.text_encoder, t.scheduler, t.model, t.params
    optimizer, ema, rng, generator = t.optimizer, t.ema, t.rng, t.generator
    tokenizer = cached_clip_tokenizer(str(tokenizer_dir), TEXT_LENGTH)
    checkpoints = _Checkpoints(Path(checkpoint_dir), config, checkpoint_every) if checkpoint_dir else None
    first, history = checkpoints.resume(model, optimizer, ema, rng, generator) if checkpoints else (0, [])
    started, cpu_started = time.time(), time.process_time()
    earlier_seconds = history[-1]["seconds"] if history else 0.0
    for step in range(first, config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, step)
        prompts, images = sample_batch(rng, config.batch_size, config.p_unsaid)
        prompts = ["" if u < config.p_uncond else p for p, u in zip(prompts, rng.random(len(prompts)))]
        ids = tokenizer(prompts, padding="max_length", max_length=TEXT_LENGTH, truncation=True,
                        return_tensors="pt").input_ids.to(config.device)
        x0 = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        noise = torch.randn(x0.shape, generator=generator).to(config.device)
        timesteps = _timesteps(config, scheduler.config.num_train_timesteps, len(x0), generator)
        x0, timesteps = x0.to(config.device), timesteps.to(config.device)
        prediction = unet(add_noise(scheduler, x0, noise, timesteps), timesteps,
                          text_encoder(ids).last_hidden_state).sample
        loss = (prediction - training_target(scheduler, x0, noise, timesteps)).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema.update(step)
        history.append({"step": step + 1, "loss": loss.item(),
                        "seconds": round(earlier_seconds + time.time() - started, 1)})
        if checkpoints is not None:
            checkpoints.save(step + 1, history, model, optimizer, ema, rng, generator)
        if on_step is not None:
            on_step(step + 1, loss.item())
    ema.copy_to_params()
    provenance = {"command": "sail world pretrain", "config": asdict(config), "torch": torch.__version__,
                  "seconds": history[-1]["seconds"] if history else 0.0,
                  "resumed_at_step": first or None,
                  "cpu_seconds_last_session": round(time.process_time() - cpu_started, 1),
                  **origin}
    return save_world_model(out_dir, unet.eval(), text_encoder.eval(), scheduler, provenance, overwrite=overwrite)
