"""The policy ε_θ and a reference ε_ref, as the two noise predictors Diffusion-DPO and the self-reward need.

Full fine-tuning holds two UNets: the policy (trainable, float32 master weights) and a frozen
reference copy (``reference_dtype``, bf16 on GPUs). LoRA holds one UNet: the base weights, the
lineage's frozen adapters and, when training, one trainable adapter; policy and reference are two
sets of active adapters on it (the reference of seed DPO is the UNet with adapters disabled).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sail_core.config import ModelConfig, RuntimeConfig
from sail_core.errors import InputError
from sail_core.io.atomic import atomic_dir
from sail_core.models.adapters import (
    TRAIN_ADAPTER,
    AdapterSwitch,
    adapter_names,
    add_adapter,
    load_adapter,
    save_adapter,
)
from sail_core.models.bundle import load_unet, torch_dtype
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.seeding import derive_seed

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel


class Denoisers:
    """Noise predictions of a policy and a reference on the same inputs."""

    policy_unet: UNet2DConditionModel
    """The raw policy UNet (its parameters, checkpoints and adapters live here)."""
    policy_module: torch.nn.Module
    """What the policy forward calls: the UNet itself, or a trainer's wrapper of it (e.g. DDP)."""

    def policy(self, sample: torch.Tensor, timesteps: torch.Tensor, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def reference(self, sample: torch.Tensor, timesteps: torch.Tensor, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        return self.policy_unet.dtype

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.policy_unet.parameters() if p.requires_grad]


class TwoUnets(Denoisers):
    """A policy UNet and a reference UNet (None when only the policy is needed, e.g. for sampling)."""

    def __init__(self, policy_unet: UNet2DConditionModel, reference_unet: UNet2DConditionModel | None) -> None:
        self.policy_unet = self.policy_module = policy_unet
        self.reference_unet = reference_unet

    def policy(self, sample, timesteps, **kwargs):
        return self.policy_module(sample.to(self.policy_unet.dtype), timesteps, **kwargs).sample

    @torch.no_grad()
    def reference(self, sample, timesteps, **kwargs):
        if self.reference_unet is None:
            raise RuntimeError("these denoisers were loaded for sampling and hold no reference UNet")
        dtype = self.reference_unet.dtype
        kwargs = _cast(kwargs, dtype)
        return self.reference_unet(sample.to(dtype), timesteps, **kwargs).sample


class AdapterViews(Denoisers):
    def __init__(self, unet: UNet2DConditionModel, policy_adapters: list[str], reference_adapters: list[str]):
        self.policy_unet = self.policy_module = unet
        self.policy_adapters = policy_adapters
        self.reference_adapters = reference_adapters
        self._switch = AdapterSwitch(unet) if (policy_adapters or reference_adapters) else None
        self._active: list[str] | None = None

    def use(self, names: list[str]) -> None:
        """Make ``names`` the active adapters (a no-op when they already are)."""
        if self._switch is not None and names != self._active:
            self._switch.activate(names)
            self._active = names

    def policy(self, sample, timesteps, **kwargs):
        self.use(self.policy_adapters)
        return self.policy_module(sample.to(self.policy_unet.dtype), timesteps, **kwargs).sample

    @torch.no_grad()
    def reference(self, sample, timesteps, **kwargs):
        self.use(self.reference_adapters)
        return self.policy_unet(sample.to(self.policy_unet.dtype), timesteps, **kwargs).sample


def _cast(kwargs: dict, dtype: torch.dtype) -> dict:
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            out[key] = value.to(dtype)
        elif isinstance(value, dict):
            out[key] = _cast(value, dtype)
        else:
            out[key] = value
    return out


def _check_prefix(reference: UnetCheckpoint, policy: UnetCheckpoint) -> None:
    if not reference.is_prefix_of(policy):
        raise InputError(f"LoRA reference {reference.label!r} is not an ancestor of policy {policy.label!r}",
                         parameter="reward.reference")


_kept_unets: dict[tuple[str, ...], UNet2DConditionModel] | None = None


@contextlib.contextmanager
def keep_inference_models() -> Iterator[None]:
    """Within this block an inference UNet (a checkpoint, with its lineage's adapters) is loaded once and
    shared: a shard run that generates and then ranks the same shards holds its policy once. Outside
    it nothing is kept (a flow process must not hold every round's models)."""
    global _kept_unets
    outer = _kept_unets
    _kept_unets = {} if outer is None else outer
    try:
        yield
    finally:
        _kept_unets = outer


def prepare_for_inference(unet: UNet2DConditionModel, runtime: RuntimeConfig | None) -> UNet2DConditionModel:
    """Apply ``runtime.channels_last`` and ``runtime.compile`` to a UNet that samples or ranks, in place.

    ``nn.Module.compile`` keeps the module itself (its dtype, config and adapters stay reachable) and
    routes its calls through ``torch.compile``; ``dynamic=False`` gives each batch shape its own
    static graph, since stages use one batch size (and a shard's smaller last batch)."""
    if runtime is None:
        return unet
    if runtime.channels_last:
        unet.to(memory_format=torch.channels_last)
    if runtime.compile:
        unet.compile(dynamic=False)
    return unet


def _inference_unet(config: ModelConfig, checkpoint: UnetCheckpoint, run_dir: str | Path, dtype: torch.dtype,
                    device: torch.device | str, runtime: RuntimeConfig | None) -> UNet2DConditionModel:
    """A frozen UNet for ``checkpoint``: full weights, or the base with the checkpoint's adapters loaded;
    compiled and channels-last as ``runtime`` asks."""
    options = (runtime.compile, runtime.channels_last) if runtime is not None else (False, False)
    key = (config.model_dump_json(), str(Path(run_dir).resolve()), checkpoint.model_dump_json(), str(dtype),
           str(device), str(options))
    if _kept_unets is not None and key in _kept_unets:
        return _kept_unets[key]
    if checkpoint.kind == "full":
        unet = load_unet(config, checkpoint, run_dir, dtype=dtype, device=device).eval().requires_grad_(False)
    else:
        unet = load_unet(config, UnetCheckpoint(), run_dir, dtype=dtype, device=device).eval().requires_grad_(False)
        for name, path in zip(adapter_names(len(checkpoint.adapters)), checkpoint.adapters):
            load_adapter(unet, name, Path(run_dir) / path)
        unet.to(device).requires_grad_(False)
    unet = prepare_for_inference(unet, runtime)
    if _kept_unets is not None:
        _kept_unets[key] = unet
    return unet


def load_for_inference(
    config: ModelConfig,
    run_dir: str | Path,
    policy: UnetCheckpoint,
    reference: UnetCheckpoint,
    device: torch.device | str = "cpu",
    runtime: RuntimeConfig | None = None,
) -> Denoisers:
    """Policy and reference for scoring (no gradients), in ``frozen_dtype``; ``runtime`` may compile
    them and make them channels-last (:func:`prepare_for_inference`)."""
    dtype = torch_dtype(config.frozen_dtype)
    if policy.kind == "full" or reference.kind == "full":
        return TwoUnets(_inference_unet(config, policy, run_dir, dtype, device, runtime),
                        _inference_unet(config, reference, run_dir, dtype, device, runtime))
    _check_prefix(reference, policy)
    names = adapter_names(len(policy.adapters))
    return AdapterViews(_inference_unet(config, policy, run_dir, dtype, device, runtime), names,
                        names[: len(reference.adapters)])


def load_policy(
    config: ModelConfig,
    run_dir: str | Path,
    checkpoint: UnetCheckpoint,
    device: torch.device | str = "cpu",
    runtime: RuntimeConfig | None = None,
) -> Denoisers:
    """Only the policy, for sampling: one UNet (LoRA: with its lineage's adapters active)."""
    if checkpoint.kind == "full":
        return TwoUnets(_inference_unet(config, checkpoint, run_dir, torch_dtype(config.frozen_dtype), device,
                                        runtime), None)
    return load_for_inference(config, run_dir, checkpoint, checkpoint, device, runtime)


def load_for_training(
    config: ModelConfig,
    run_dir: str | Path,
    init: UnetCheckpoint,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> Denoisers:
    """A trainable policy initialised from ``init`` and a frozen reference equal to ``init``
    (Diffusion-DPO's setting, and each SAIL round's: the previous model is both)."""
    if config.train_mode == "full":
        policy_unet = load_unet(config, init, run_dir, dtype=torch.float32, device=device).train()
        reference_unet = load_unet(config, init, run_dir, dtype=torch_dtype(config.reference_dtype), device=device)
        return TwoUnets(policy_unet, reference_unet.eval().requires_grad_(False))
    if init.kind == "full":
        raise InputError("cannot train LoRA on top of a fully fine-tuned lineage", parameter="model.train_mode")
    # bf16/fp16 mixed precision keeps the frozen base in float32 here; accelerate autocasts the matmuls.
    unet = load_unet(config, UnetCheckpoint(), run_dir, dtype=torch.float32, device=device).requires_grad_(False)
    names = adapter_names(len(init.adapters))
    for name, path in zip(names, init.adapters):
        load_adapter(unet, name, Path(run_dir) / path)
    with torch.random.fork_rng(devices=[]):
        # peft draws lora_A from the global generator: seed it, or two runs start from different adapters
        torch.manual_seed(derive_seed("lora-init", seed, len(init.adapters)))
        add_adapter(unet, TRAIN_ADAPTER, config.lora)
    unet.to(device).train()
    views = AdapterViews(unet, names + [TRAIN_ADAPTER], names)
    views.use(views.policy_adapters)
    return views


def save_trained(
    config: ModelConfig,
    denoisers: Denoisers,
    init: UnetCheckpoint,
    out_dir: str | Path,
    run_dir: str | Path,
    label: str,
) -> UnetCheckpoint:
    """Write the trained policy (UNet folder, or the new adapter) and return its checkpoint spec."""
    out_dir = Path(out_dir)
    rel = out_dir.resolve().relative_to(Path(run_dir).resolve())
    if config.train_mode == "full":
        # overwrite: a UNet folder without model.json beside it is an interrupted save
        # the folder it was loaded from would otherwise be written into config.json: the same weights
        # trained in two run directories (or on two machines) must hash the same
        denoisers.policy_unet.register_to_config(_name_or_path="")
        with atomic_dir(out_dir / "unet", overwrite=True) as tmp:
            denoisers.policy_unet.save_pretrained(tmp, safe_serialization=True)
        return UnetCheckpoint(kind="full", weights=str(rel / "unet"), label=label)
    save_adapter(denoisers.policy_unet, TRAIN_ADAPTER, config.lora, out_dir / "adapter.safetensors", overwrite=True)
    return UnetCheckpoint(kind="lora", adapters=init.adapters + (str(rel / "adapter.safetensors"),), label=label)
