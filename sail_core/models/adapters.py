"""LoRA adapters on a diffusers UNet: add, load, save, and switch between views.

A view is the set of adapters that are active. The trainable adapter is always named
``TRAIN_ADAPTER``; frozen adapters (earlier rounds) never get gradients, whichever view is active.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sail_core.config import LoraSettings
from sail_core.errors import InputError
from sail_core.io.tensors import read_metadata, read_tensors, write_tensors

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

TRAIN_ADAPTER = "trainable"  # not "train": adapters become attributes and nn.Module.train exists


def lora_config(settings: LoraSettings) -> LoraConfig:
    from peft import LoraConfig

    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        target_modules=list(settings.target_modules),
        init_lora_weights="gaussian",  # B = 0: a fresh adapter leaves the model unchanged
    )


class AdapterSwitch:
    """Activates a set of adapters (or none) on every LoRA layer of a UNet."""

    def __init__(self, unet: UNet2DConditionModel) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.unet = unet
        self.layers = [m for m in unet.modules() if isinstance(m, BaseTunerLayer)]

    def activate(self, names: Sequence[str]) -> None:
        for layer in self.layers:
            layer.enable_adapters(bool(names))
            if names:
                layer.set_adapter(list(names))
        self._freeze_all_but_train()

    def _freeze_all_but_train(self) -> None:
        # peft's set_adapter makes every active adapter trainable; only the train adapter may be.
        for name, param in self.unet.named_parameters():
            if "lora_" in name:
                param.requires_grad_(f".{TRAIN_ADAPTER}." in name)


def add_adapter(unet: UNet2DConditionModel, name: str, settings: LoraSettings) -> None:
    with warnings.catch_warnings():
        # stacking one adapter per round is the point; peft warns about every adapter after the first
        warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
        unet.add_adapter(lora_config(settings), adapter_name=name)


def load_adapter(unet: UNet2DConditionModel, name: str, path: str | Path) -> None:
    """Add adapter ``name`` with the rank/targets recorded in the file and load its weights."""
    from peft import set_peft_model_state_dict

    meta = read_metadata(path)
    if "lora" not in meta:
        raise InputError("not a sail LoRA adapter file (no 'lora' metadata)", file=path)
    settings = LoraSettings.model_validate(json.loads(meta["lora"]))
    add_adapter(unet, name, settings)
    result = set_peft_model_state_dict(unet, read_tensors(path), adapter_name=name)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise InputError(f"adapter keys do not match the UNet: {unexpected[:3]}...", file=path)


def save_adapter(unet: UNet2DConditionModel, name: str, settings: LoraSettings, path: str | Path,
                 *, overwrite: bool = False) -> Path:
    from peft import get_peft_model_state_dict

    state = {k: v.detach().float() for k, v in get_peft_model_state_dict(unet, adapter_name=name).items()}
    return write_tensors(path, state, metadata={"lora": settings.model_dump_json()}, overwrite=overwrite)


def adapter_names(count: int) -> list[str]:
    """Names of the frozen adapters of a lineage, oldest first."""
    return [f"round{i}" for i in range(count)]


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]
