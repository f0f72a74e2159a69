"""CLIP pieces shared by the PickScore, CLIP-score, aesthetic and HPSv2 scorers.

Embeddings are taken from the towers and projections directly rather than through
``CLIPModel.get_image_features``/``get_text_features``, whose return type changed between
transformers 4 (a tensor) and 5 (an output object); the computation is the same.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

from sail_core.errors import InputError
from sail_core.evaluation.scorers.loading import pretrained_error

try:  # transformers 5 names the PIL/numpy processor explicitly; in 4.x it is the default class.
    from transformers import CLIPImageProcessorPil as _PilClipImageProcessor
except ImportError:  # pragma: no cover - transformers 4.x
    from transformers import CLIPImageProcessor as _PilClipImageProcessor

PilClipImageProcessor = _PilClipImageProcessor


def image_embeddings(model: CLIPModel, pixel_values: torch.Tensor) -> torch.Tensor:
    pooled = model.vision_model(pixel_values=pixel_values).pooler_output
    return model.visual_projection(pooled)


def text_embeddings(model: CLIPModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    pooled = model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    return model.text_projection(pooled)


def unit(features: torch.Tensor) -> torch.Tensor:
    """``x / ||x||`` as PickScore's README and torchmetrics write it (no epsilon)."""
    return features / features.norm(p=2, dim=-1, keepdim=True)


def rowwise_cosine(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """cos(image_i, text_i) in float32: the diagonal of the references' similarity matrices."""
    return (unit(image_features.float()) * unit(text_features.float())).sum(dim=-1)


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""Where a local CLIP folder keeps its weights, in the order transformers looks for them."""


def load_clip_model(source: str | Path, parameter: str) -> CLIPModel:
    try:
        model = CLIPModel.from_pretrained(str(source))
    except Exception as exc:  # noqa: BLE001 - transformers and torch raise many types (a refused pickle, too)
        folder = Path(source)
        weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None) if folder.is_dir() else None
        if isinstance(exc, pickle.UnpicklingError):  # torch's text would suggest loading it with code execution
            raise InputError("the weights are a pickle that cannot be read as tensors only (loading it would run "
                             "code); re-save them as safetensors from a trusted environment",
                             file=weights or source, parameter=parameter) from exc
        raise pretrained_error("a CLIP model", weights or source, exc, parameter) from exc
    # float32 master weights whatever the checkpoint stores; lower precision is autocast's job.
    return frozen(model.float())


def load_image_processor(source: str | Path, parameter: str) -> PilClipImageProcessor:
    # The PIL processor, not the torchvision one transformers 5 prefers when torchvision is
    # installed: the references ran the PIL/numpy processor of transformers 4.
    try:
        return PilClipImageProcessor.from_pretrained(str(source))
    except (OSError, ValueError) as exc:
        raise pretrained_error("a CLIP image processor", source, exc, parameter) from exc


def load_tokenizer(source: str | Path, parameter: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as exc:
        raise pretrained_error("a tokenizer", source, exc, parameter) from exc


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def random_clip_model(
    *, seed: int, vocab_size: int, eos_token_id: int, bos_token_id: int, pad_token_id: int,
    width: int = 32, layers: int = 2, heads: int = 4, image_size: int = 224, patch_size: int = 32,
    projection_dim: int = 16, act: str = "gelu", context_length: int = 77, logit_scale: float | None = None,
) -> CLIPModel:
    """A randomly initialised ``CLIPModel`` (the real architecture, tiny widths) for tests."""
    config = CLIPConfig(
        text_config=dict(
            vocab_size=vocab_size, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
            num_attention_heads=heads, max_position_embeddings=context_length, hidden_act=act,
            bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
            projection_dim=projection_dim,
        ),
        vision_config=dict(
            hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads,
            image_size=image_size, patch_size=patch_size, hidden_act=act, projection_dim=projection_dim,
        ),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    # transformers' init makes near-identical embeddings; perturb everything so scores differ
    # between images and prompts and a wrong formula cannot pass by accident.
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        for name, parameter in model.named_parameters():
            if name == "logit_scale":
                parameter.fill_(logit_scale if logit_scale is not None else float(torch.log(torch.tensor(100.0))))
            elif parameter.ndim >= 2 or "embedding" in name:
                parameter.normal_(0.0, 0.2, generator=generator)
            else:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return frozen(model)
