"""ImageReward v1.0 (Xu et al., 2023): BLIP ViT-L image encoder, BERT text encoder with
cross-attention to the image, and a five-linear head on the [CLS] output.

Formula, from THUDM/ImageReward @c1392c6 (= the ``image-reward`` 1.5 package),
``ImageReward/ImageReward.py`` ``ImageReward.score``::

    text_input = blip.tokenizer(prompt, padding='max_length', truncation=True, max_length=35)
    image_embeds = blip.visual_encoder(preprocess(pil_image))   # all tokens, after the final norm
    text_output = blip.text_encoder(text_input.input_ids, attention_mask=text_input.attention_mask,
                                    encoder_hidden_states=image_embeds,
                                    encoder_attention_mask=ones)
    rewards = mlp(text_output.last_hidden_state[:, 0, :].float())
    rewards = (rewards - 0.16717362830052426) / 1.0333394966054072

``preprocess`` is Resize(224, bicubic) + CenterCrop(224) + CLIP Normalize
(``preprocess.resize_center_crop``); the tokenizer is bert-base-uncased plus BLIP's [DEC]/[ENC]
special tokens; ``blip.visual_encoder`` is BLIP's timm-style ViT (``models/BLIP/vit.py``, LayerNorm
eps 1e-6, qkv bias) and ``blip.text_encoder`` BLIP's ``med.py`` BertModel without pooler.

The package pins timm 0.6.13 and fairscale and its ``med.py`` imports helpers transformers 5
removed, so it is not used. Instead its checkpoint (``ImageReward.pt``, a plain state dict read
weights-only) is mapped onto transformers' BLIP classes, which are ports of the same two modules:
``BlipVisionModel`` (timm ViT, fused qkv) and ``BlipTextModel`` (med.py BertModel with
cross-attention); the mapping is a renaming of the vision keys and a prefix strip of the text keys.
Equality with the package's own modules is tested in tests/evaluation on reference outputs.

Precision: the reference runs float32 on CUDA; so does this by default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

from sail_core.errors import InputError
from sail_core.evaluation.scorers import clip_common
from sail_core.evaluation.scorers.base import Runtime, check_batch_size, check_inputs, run_batched
from sail_core.evaluation.scorers.heads import LinearStackHead
from sail_core.evaluation.scorers.loading import load_state_dict, pretrained_error, resolve_file
from sail_core.evaluation.scorers.preprocess import resize_center_crop
from sail_core.evaluation.scorers.tiny import add_blip_special_tokens, tiny_bert_tokenizer

IMAGEREWARD_REPO = "THUDM/ImageReward"
IMAGEREWARD_FILE = "ImageReward.pt"
MED_CONFIG_FILE = "med_config.json"
IMAGEREWARD_TOKENIZER = "google-bert/bert-base-uncased"
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
MAX_TOKENS = 35
VISION_EPS = 1e-6  # BLIP vit.py: partial(nn.LayerNorm, eps=1e-6)

_VISION_DIRECT = {
    "cls_token": "embeddings.class_embedding",
    "pos_embed": "embeddings.position_embedding",
    "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
    "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
    "norm.weight": "post_layernorm.weight",
    "norm.bias": "post_layernorm.bias",
}
_VISION_BLOCK = {
    "norm1": "layer_norm1", "norm2": "layer_norm2", "attn.qkv": "self_attn.qkv", "attn.proj": "self_attn.projection",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}
# Parts of the BLIP_Pretrain checkpoint that ImageReward.score never uses.
_UNUSED_PREFIXES = ("blip.vision_proj.", "blip.text_proj.")
_UNUSED_KEYS = {"blip.text_encoder.embeddings.position_ids"}


def split_checkpoint(state: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """ImageReward state dict -> {"vision", "text", "head"} state dicts in transformers' names."""
    parts: dict[str, dict[str, torch.Tensor]] = {"vision": {}, "text": {}, "head": {}}
    unknown = []
    for key, value in state.items():
        if key in _UNUSED_KEYS or key.startswith(_UNUSED_PREFIXES):
            continue
        if key.startswith("blip.visual_encoder."):
            rest = key[len("blip.visual_encoder."):]
            if rest in _VISION_DIRECT:
                parts["vision"][_VISION_DIRECT[rest]] = value
            elif m := re.match(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$", rest):
                if m.group(2) not in _VISION_BLOCK:
                    unknown.append(key)
                    continue
                parts["vision"][f"encoder.layers.{m.group(1)}.{_VISION_BLOCK[m.group(2)]}.{m.group(3)}"] = value
            else:
                unknown.append(key)
        elif key.startswith("blip.text_encoder."):
            parts["text"][key[len("blip.text_encoder."):]] = value
        elif key.startswith("mlp."):
            parts["head"][key[len("mlp."):]] = value
        else:
            unknown.append(key)
    if unknown:
        raise InputError(f"ImageReward checkpoint has unexpected parameters: {sorted(unknown)[:8]}",
                         parameter="checkpoint")
    return parts


def vision_config_from_state(vision: Mapping[str, torch.Tensor], heads: int | None = None) -> BlipVisionConfig:
    """BLIP ViT dimensions from its weights; heads default to width / 64 (BLIP base 12, large 16)."""
    try:
        width = vision["embeddings.class_embedding"].shape[-1]
        patch = vision["embeddings.patch_embedding.weight"].shape[-1]
        positions = vision["embeddings.position_embedding"].shape[1]
        intermediate = vision["encoder.layers.0.mlp.fc1.weight"].shape[0]
    except KeyError as exc:
        raise InputError(f"ImageReward checkpoint lacks vision parameter {exc}", parameter="checkpoint") from exc
    layers = 1 + max(int(k.split(".")[2]) for k in vision if k.startswith("encoder.layers."))
    grid = int(round((positions - 1) ** 0.5))
    heads = heads or width // 64
    if heads < 1 or width % heads:
        raise InputError(f"vision width {width} cannot be split into {heads} heads", parameter="vision_heads")
    return BlipVisionConfig(
        hidden_size=width, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, image_size=grid * patch, patch_size=patch,
        hidden_act="gelu", layer_norm_eps=VISION_EPS, attention_dropout=0.0,
    )


def text_config_from_med(med: Mapping[str, Any], encoder_width: int) -> BlipTextConfig:
    """BLIP's med_config.json (a BertConfig) as a BlipTextConfig; ``encoder_width`` is the ViT width,
    which BLIP_Pretrain writes into the config at construction."""
    try:
        return BlipTextConfig(
            vocab_size=med["vocab_size"], hidden_size=med["hidden_size"], encoder_hidden_size=encoder_width,
            intermediate_size=med["intermediate_size"], num_hidden_layers=med["num_hidden_layers"],
            num_attention_heads=med["num_attention_heads"], max_position_embeddings=med["max_position_embeddings"],
            hidden_act=med.get("hidden_act", "gelu"), layer_norm_eps=med.get("layer_norm_eps", 1e-12),
            hidden_dropout_prob=med.get("hidden_dropout_prob", 0.0),
            attention_probs_dropout_prob=med.get("attention_probs_dropout_prob", 0.0),
            pad_token_id=med.get("pad_token_id", 0), bos_token_id=None, eos_token_id=None, sep_token_id=None,
        )
    except KeyError as exc:
        raise InputError(f"med_config lacks {exc}", parameter="med_config") from exc


class ImageRewardModel(nn.Module):
    """BLIP vision + cross-attention text encoder + head, computing ImageReward.score's formula."""

    def __init__(self, vision_config: BlipVisionConfig, text_config: BlipTextConfig, head_input: int) -> None:
        super().__init__()
        self.vision = BlipVisionModel(vision_config)
        self.text = BlipTextModel(text_config, add_pooling_layer=False)
        self.head = LinearStackHead(head_input)

    def text_features(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor) -> torch.Tensor:
        image_embeds = self.vision(pixel_values=pixel_values).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        out = self.text(input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds,
                        encoder_attention_mask=image_mask, return_dict=True)
        return out.last_hidden_state[:, 0, :]

    def reward(self, text_features: torch.Tensor) -> torch.Tensor:
        return ((self.head(text_features.float()) - REWARD_MEAN) / REWARD_STD).squeeze(-1)

    @classmethod
    def from_checkpoint(cls, state: Mapping[str, torch.Tensor], med_config: Mapping[str, Any],
                        vision_heads: int | None = None) -> ImageRewardModel:
        parts = split_checkpoint(state)
        vision_config = vision_config_from_state(parts["vision"], vision_heads)
        text_config = text_config_from_med(med_config, vision_config.hidden_size)
        head_input = parts["head"]["layers.0.weight"].shape[1] if "layers.0.weight" in parts["head"] else -1
        if head_input != text_config.hidden_size:
            raise InputError(f"head input {head_input} != text hidden size {text_config.hidden_size}",
                             parameter="checkpoint")
        model = cls(vision_config, text_config, head_input)
        for module, part in ((model.vision, "vision"), (model.text, "text"), (model.head, "head")):
            _load_exact(module, parts[part], part)
        return model.eval()


def _load_exact(module: nn.Module, state: Mapping[str, torch.Tensor], part: str) -> None:
    expected = {k for k in module.state_dict() if not k.endswith("position_ids")}
    missing, extra = expected - state.keys(), state.keys() - expected
    if missing or extra:
        raise InputError(f"ImageReward {part} weights do not fit: missing {sorted(missing)[:6]}, "
                         f"unexpected {sorted(extra)[:6]}", parameter="checkpoint")
    for key, value in state.items():
        if tuple(value.shape) != tuple(module.state_dict()[key].shape):
            raise InputError(f"ImageReward {part}.{key}: shape {tuple(value.shape)} != "
                             f"{tuple(module.state_dict()[key].shape)}", parameter="checkpoint")
    module.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)


@dataclass(eq=False)
class ImageRewardScorer:
    model: ImageRewardModel
    tokenizer: Any
    runtime: Runtime
    batch_size: int = 16
    name: ClassVar[str] = "imagereward"
    metrics: ClassVar[tuple[str, ...]] = ("imagereward",)

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)
        self.model = clip_common.frozen(self.model).to(self.runtime.device)

    @property
    def image_size(self) -> int:
        return int(self.model.vision.config.image_size)

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([resize_center_crop(image, self.image_size) for image in images])

    def text_inputs(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=MAX_TOKENS,
                                 return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    @torch.no_grad()
    def batch_scores(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        device = self.runtime.device
        pixels = self.pixel_values(images).to(device)
        text = {k: v.to(device) for k, v in self.text_inputs(prompts).items()}
        with self.runtime.autocast():
            features = self.model.text_features(pixels, text["input_ids"], text["attention_mask"])
        return self.model.reward(features)

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, np.ndarray]:
        rgb = check_inputs(images, prompts)
        return {"imagereward": run_batched(rgb, list(prompts), self.batch_size, self.batch_scores)}

    @classmethod
    def from_pretrained(
        cls, checkpoint: str | Path = IMAGEREWARD_REPO, tokenizer: str | Path = IMAGEREWARD_TOKENIZER, *,
        med_config: str | Path | None = None, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
        batch_size: int = 16,
    ) -> ImageRewardScorer:
        """``checkpoint``: ImageReward.pt, a folder holding it and med_config.json, or a Hub repository
        (THUDM/ImageReward holds both). ``med_config`` defaults to the one beside the checkpoint."""
        weights = resolve_file(checkpoint, IMAGEREWARD_FILE, parameter="checkpoint")
        config_path = resolve_file(med_config, MED_CONFIG_FILE, parameter="med_config") if med_config else (
            weights.parent / MED_CONFIG_FILE if (weights.parent / MED_CONFIG_FILE).is_file()
            else resolve_file(checkpoint, MED_CONFIG_FILE, parameter="med_config"))
        try:
            med = json.loads(Path(config_path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"med_config is not readable JSON ({exc})", file=config_path,
                             parameter="med_config") from exc
        model = ImageRewardModel.from_checkpoint(load_state_dict(weights, parameter="checkpoint"), med)
        return cls(model=model, tokenizer=load_blip_tokenizer(tokenizer),
                   runtime=Runtime.resolve(device, dtype, cuda_default=torch.float32), batch_size=batch_size)

    @classmethod
    def random(cls, seed: int = 0, *, device: torch.device | str = "cpu", batch_size: int = 16,
               image_size: int = 224, width: int = 32, layers: int = 2, heads: int = 4,
               text_width: int = 32, text_layers: int = 2, text_heads: int = 4) -> ImageRewardScorer:
        """Random weights of the ImageReward architecture, tiny widths, tiny WordPiece tokenizer."""
        tokenizer = tiny_bert_tokenizer()
        vision_config = BlipVisionConfig(
            hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers, num_attention_heads=heads,
            image_size=image_size, patch_size=16, hidden_act="gelu", layer_norm_eps=VISION_EPS)
        text_config = text_config_from_med(
            {"vocab_size": len(tokenizer), "hidden_size": text_width, "intermediate_size": 4 * text_width,
             "num_hidden_layers": text_layers, "num_attention_heads": text_heads, "max_position_embeddings": 64},
            width)
        torch.manual_seed(seed)
        model = ImageRewardModel(vision_config, text_config, text_width)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(seed)
            for parameter in model.parameters():
                if parameter.ndim >= 2:
                    parameter.normal_(0.0, 0.2, generator=generator)
        return cls(model=model, tokenizer=tokenizer, runtime=Runtime.resolve(device, None, torch.float32),
                   batch_size=batch_size)


def load_blip_tokenizer(source: str | Path):
    """bert-base-uncased with BLIP's [DEC]/[ENC] (they never occur in prompts; added so token ids
    and vocabulary size, 30524, match the checkpoint)."""
    from transformers import BertTokenizer

    try:
        tokenizer = BertTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as exc:
        raise pretrained_error("the BERT tokenizer", source, exc, "tokenizer") from exc
    add_blip_special_tokens(tokenizer)
    return tokenizer
