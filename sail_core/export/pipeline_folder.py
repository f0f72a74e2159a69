"""The files of an export, written with diffusers' own savers so that diffusers' own loaders read them.

* a merged LoRA as ``pytorch_lora_weights.safetensors`` (the family pipeline's ``save_lora_weights``:
  ``unet.``-prefixed PEFT keys and the adapter's rank, alpha and targets as metadata), and optionally
  the same LoRA in Kohya's key layout (diffusers' ``convert_state_dict_to_kohya``);
* a complete pipeline folder (``save_pretrained``): the base's components with the run's UNet (a fine-
  tuned one, or the base's with the LoRA fused in float32 and the adapter unloaded) and the VAE the run
  used (``model.vae_source``, e.g. SDXL's fp16-fix VAE), in the chosen dtype (a non-fp32 dtype is
  saved as that variant: ``diffusion_pytorch_model.fp16.safetensors``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Literal

import torch

from sail_core.config import ModelConfig
from sail_core.errors import InputError
from sail_core.export.lora_merge import MergedLora
from sail_core.io.paths import local_path
from sail_core.io.tensors import write_tensors

ExportDType = Literal["fp32", "fp16", "bf16"]
LORA_FILE = "pytorch_lora_weights.safetensors"
KOHYA_FILE = "pytorch_lora_weights_kohya.safetensors"
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def variant(dtype: ExportDType) -> str | None:
    """The diffusers variant a pipeline folder of this dtype is saved as (None: the plain files)."""
    return None if dtype == "fp32" else dtype


def pipeline_class(config: ModelConfig):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if config.family == "sdxl" else StableDiffusionPipeline


def is_pixel(config: ModelConfig) -> bool:
    """A pixel-space model has no VAE, so no Stable Diffusion pipeline holds it: it is saved as a
    :class:`~sail_core.export.pixel_pipeline.PixelDiffusionPipeline`."""
    return config.codec == "pixel"


def check_exportable(config: ModelConfig) -> None:
    if is_pixel(config) and config.family != "sd15":
        raise InputError("a pixel-space model is exported with SD1.5's conditioning only (model.family=sd15)",
                         parameter="model.family")


def pipeline_name(config: ModelConfig) -> str:
    return "PixelDiffusionPipeline" if is_pixel(config) else pipeline_class(config).__name__


def lora_metadata(merged: MergedLora) -> dict:
    """The minimal adapter metadata diffusers builds its ``LoraConfig`` from: rank, alpha = rank, targets."""
    return {"r": merged.rank, "lora_alpha": merged.rank, "target_modules": list(merged.modules)}


def write_lora(folder: Path, config: ModelConfig, merged: MergedLora, dtype: ExportDType, *, kohya: bool) -> list[str]:
    """The merged LoRA in diffusers' format (and Kohya's); returns the file names written."""
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya

    weights = merged.to(TORCH_DTYPES[dtype]).tensors
    pipeline_class(config).save_lora_weights(folder, unet_lora_layers=weights, safe_serialization=True,
                                             unet_lora_adapter_metadata=lora_metadata(merged))
    canonical_metadata_order(folder / LORA_FILE)
    written = [LORA_FILE]
    if kohya:
        kohya_weights = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in weights.items()})
        write_tensors(folder / KOHYA_FILE, kohya_weights, metadata={"format": "pt"})
        written.append(KOHYA_FILE)
    return written


def canonical_metadata_order(path: Path) -> None:
    """Sort a safetensors file's ``__metadata__`` entries in place. safetensors writes them from a hash map,
    in an order that changes from process to process: the same LoRA would be other bytes in every run (a run
    directory is reproducible byte for byte). Only the order of the header's entries changes (same length);
    a header this cannot rewrite to the same length is left as it is."""
    with open(path, "r+b") as handle:
        size = int.from_bytes(handle.read(8), "little")
        raw = handle.read(size)
        header = json.loads(raw, object_pairs_hook=dict)
        if not isinstance(header.get("__metadata__"), dict):
            return
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) <= size and json.loads(text) == json.loads(raw):
            handle.seek(8)
            handle.write(text.ljust(size, b" "))


def load_base_pipeline(config: ModelConfig, **components):
    """The base model as its family's diffusers pipeline in float32, with the run's separate VAE."""
    from diffusers import AutoencoderKL

    source = local_path(config.source)
    kwargs: dict = {"use_safetensors": True, "local_files_only": config.local_files_only,
                    "torch_dtype": torch.float32}
    if config.revision:
        kwargs["revision"] = config.revision
    if config.variant:
        kwargs["variant"] = config.variant
    if config.vae_source and "vae" not in components:
        components["vae"] = AutoencoderKL.from_pretrained(local_path(config.vae_source), torch_dtype=torch.float32,
                                                          use_safetensors=True,
                                                          local_files_only=config.local_files_only)
    try:
        return pipeline_class(config).from_pretrained(source, **kwargs, **components)
    except OSError as exc:
        raise InputError(f"cannot load the base pipeline ({' '.join(str(exc).split())})",
                         parameter="model.source") from exc


def save_pipeline(pipe, folder: Path, dtype: ExportDType) -> None:
    pipe.to(TORCH_DTYPES[dtype])
    pipe.save_pretrained(folder, safe_serialization=True, variant=variant(dtype))
    forget_origins(folder)


def forget_origins(folder: Path) -> None:
    """Blank the ``_name_or_path`` diffusers and transformers write into saved configs: it is the folder a
    component was loaded from on this machine, meaningless elsewhere (and the same model exported from
    two places would differ in it)."""
    for path in sorted(folder.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and any(data.get(k) for k in ("_name_or_path", "name_or_path")):
            for key in ("_name_or_path", "name_or_path"):
                if key in data:
                    data[key] = ""
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_fused(folder: Path, config: ModelConfig, merged: MergedLora, dtype: ExportDType) -> None:
    """The base pipeline with the merged LoRA loaded through diffusers, fused into the UNet's weights in
    float32 (``fuse_lora``), the adapter unloaded, then saved."""
    pipe = load_base_pipeline(config)
    with tempfile.TemporaryDirectory() as scratch:
        write_lora(Path(scratch), config, merged, "fp32", kohya=False)
        pipe.load_lora_weights(scratch, adapter_name="sail")
    pipe.fuse_lora(components=["unet"], lora_scale=1.0, adapter_names=["sail"])
    pipe.unload_lora_weights()
    save_pipeline(pipe, folder, dtype)


def write_full(folder: Path, config: ModelConfig, unet_folder: Path, dtype: ExportDType) -> None:
    """The base pipeline with the run's fine-tuned UNet."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(unet_folder, torch_dtype=torch.float32, use_safetensors=True,
                                                local_files_only=True)
    if is_pixel(config):
        save_pipeline(load_pixel_pipeline(config, unet), folder, dtype)
    else:
        save_pipeline(load_base_pipeline(config, unet=unet), folder, dtype)


def load_pixel_pipeline(config: ModelConfig, unet=None):
    """A pixel-space model folder (``unet/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``, no
    ``model_index.json`` needed) as a :class:`PixelDiffusionPipeline`, with ``unet`` in place of its own."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from sail_core.export.pixel_pipeline import PixelDiffusionPipeline

    source = local_path(config.source)
    kwargs: dict = {"local_files_only": config.local_files_only}
    if config.revision:
        kwargs["revision"] = config.revision
    try:
        if unet is None:
            unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=torch.float32,
                                                        use_safetensors=True, **kwargs)
        return PixelDiffusionPipeline(
            unet=unet, scheduler=DDPMScheduler.from_pretrained(source, subfolder="scheduler", **kwargs),
            text_encoder=CLIPTextModel.from_pretrained(source, subfolder="text_encoder", torch_dtype=torch.float32,
                                                       use_safetensors=True, **kwargs),
            tokenizer=CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kwargs))
    except OSError as exc:
        raise InputError(f"cannot load the base model ({' '.join(str(exc).split())})",
                         parameter="model.source") from exc


def write_pixel_fused(folder: Path, config: ModelConfig, merged: MergedLora, dtype: ExportDType) -> None:
    """A pixel-space LoRA lineage: ``W + B A`` of the merged adapter written into the base UNet's weights
    (the pixel pipeline has no LoRA loader)."""
    from sail_core.export.lora_merge import delta_weight

    pipe = load_pixel_pipeline(config)
    with torch.no_grad():
        for module in merged.modules:
            layer = pipe.unet.get_submodule(module)
            layer.weight += delta_weight(merged, module).to(layer.weight.dtype)
    save_pipeline(pipe, folder, dtype)
