"""The published architectures SAIL runs on, from their component configs shipped as package data.

``published/<name>/`` holds, byte for byte, the configuration files of SD1.5, SDXL base 1.0, the
fp16-fix SDXL VAE and CLIP ViT-L/14 (where each comes from: ``published/SOURCES.md``). An
:class:`Architecture` says which components a diffusers folder of that model has, which files each
component needs, and builds any component on the meta device (shapes only, no memory), so parameter
counts and folder completeness are checked without weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch is imported where a model is built: listing architectures stays cheap (the CLI)
    import torch

PUBLISHED_DIR = Path(__file__).parent / "published"

ComponentKind = Literal["unet", "vae", "text_encoder", "text_encoder_projection", "clip", "tokenizer",
                        "scheduler", "image_processor"]
_DIFFUSERS_WEIGHTS = "diffusion_pytorch_model"
_TRANSFORMERS_WEIGHTS = "model"


@dataclass(frozen=True)
class Component:
    """One subfolder of a diffusers folder ("" for a single-model folder such as a VAE)."""

    subfolder: str
    kind: ComponentKind

    @property
    def has_weights(self) -> bool:
        return self.kind in ("unet", "vae", "text_encoder", "text_encoder_projection", "clip")

    @property
    def weights_stem(self) -> str:
        return _DIFFUSERS_WEIGHTS if self.kind in ("unet", "vae") else _TRANSFORMERS_WEIGHTS

    def weights_file(self, variant: str | None = None) -> str:
        """``diffusion_pytorch_model.safetensors`` / ``model.safetensors`` (``.fp16.`` with a variant)."""
        return f"{self.weights_stem}.{variant}.safetensors" if variant else f"{self.weights_stem}.safetensors"

    def weights_index(self, variant: str | None = None) -> str:
        """The index of the same weights saved in shards (how the Hub stores large files)."""
        return f"{self.weights_file(variant)}.index.json"

    @property
    def config_files(self) -> tuple[str, ...]:
        """The published files this component's folder holds besides weights and vocabulary."""
        return {
            "unet": ("config.json",), "vae": ("config.json",), "text_encoder": ("config.json",),
            "text_encoder_projection": ("config.json",), "clip": ("config.json",),
            "tokenizer": ("tokenizer_config.json", "special_tokens_map.json"),
            "scheduler": ("scheduler_config.json",), "image_processor": ("preprocessor_config.json",),
        }[self.kind]

    def path(self, folder: str | Path) -> Path:
        return Path(folder) / self.subfolder if self.subfolder else Path(folder)


@dataclass(frozen=True)
class Architecture:
    name: str
    hub_id: str
    """The Hub repository whose files ``published/<name>/`` copies."""
    revision: str
    components: tuple[Component, ...]
    model_index: bool = False
    """A pipeline folder (``model_index.json`` at its root) rather than one model's folder."""

    @property
    def published(self) -> Path:
        return PUBLISHED_DIR / self.name

    def component(self, subfolder: str) -> Component:
        for component in self.components:
            if component.subfolder == subfolder:
                return component
        raise KeyError(f"{self.name} has no component {subfolder!r}")

    def build(self, subfolder: str, device: torch.device | str = "meta") -> torch.nn.Module:
        """The component's model, its weights uninitialised on ``device`` (meta: shapes only)."""
        return build_component(self.component(subfolder), self.published, device)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per component with weights, counted on the meta device."""
        return {c.subfolder or self.name: sum(p.numel() for p in self.build(c.subfolder).parameters())
                for c in self.components if c.has_weights}


def build_component(component: Component, config_root: Path, device: torch.device | str = "meta") -> torch.nn.Module:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = component.path(config_root)
    with torch.device(device):
        if component.kind == "unet":
            return UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder))
        if component.kind == "vae":
            return AutoencoderKL.from_config(AutoencoderKL.load_config(folder))
        if component.kind == "text_encoder":
            return CLIPTextModel(CLIPTextConfig.from_pretrained(folder))
        if component.kind == "text_encoder_projection":
            return CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder))
        if component.kind == "clip":
            return CLIPModel(CLIPConfig.from_pretrained(folder))
    raise ValueError(f"component {component.subfolder!r} ({component.kind}) has no weights")


_SD_PIPELINE = (Component("unet", "unet"), Component("vae", "vae"), Component("text_encoder", "text_encoder"),
                Component("tokenizer", "tokenizer"), Component("scheduler", "scheduler"))

ARCHITECTURES: dict[str, Architecture] = {
    "sd15": Architecture(
        "sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "1d0c4ebf6ff58a5caecab40fa1406526bca4b5b9",
        _SD_PIPELINE, model_index=True),
    "sdxl": Architecture(
        "sdxl", "stabilityai/stable-diffusion-xl-base-1.0", "462165984030d82259a11f4367a4eed129e94a7b",
        (*_SD_PIPELINE, Component("text_encoder_2", "text_encoder_projection"), Component("tokenizer_2", "tokenizer")),
        model_index=True),
    "sdxl-vae-fp16-fix": Architecture(
        "sdxl-vae-fp16-fix", "madebyollin/sdxl-vae-fp16-fix", "9992f498e6cc2c264708ee91071a97135963ee28",
        (Component("", "vae"),)),
    "clip-vit-large-patch14": Architecture(
        "clip-vit-large-patch14", "openai/clip-vit-large-patch14", "32bd64288804d66eefd0ccbe215aa642df71cc41",
        (Component("", "clip"), Component("", "tokenizer"), Component("", "image_processor"))),
}
"""By name: the two pipelines a preset's ``model.family`` names, the fp16-fix VAE (a ``model.vae_source``)
and CLIP ViT-L/14 (the CLIP-score scorer's and the aesthetic predictor's CLIP)."""


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]
