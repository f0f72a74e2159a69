"""open_clip / OpenAI CLIP state dicts <-> transformers ``CLIPModel``.

open_clip cannot be imported here (it imports torchvision), and HPSv2 ships open_clip-format
checkpoints. A ViT CLIP is the same network in both libraries: pre-LN residual blocks with one
fused ``in_proj`` (open_clip, nn.MultiheadAttention) versus separate q/k/v projections
(transformers), ``x @ proj`` versus ``Linear`` without bias, class token pooled after ``ln_post``
and text pooled at the end-of-text token after ``ln_final``. The mapping below is a pure renaming,
transposing and splitting of tensors; every dimension is read from the checkpoint and only the head
counts and the activation (which shapes do not reveal) come from the named architecture.

Names on the open_clip side follow open_clip's ``CLIP`` (``open_clip/model.py``, ``transformer.py``,
also vendored by HPSv2 as ``hpsv2/src/open_clip``); OpenAI's ``clip/model.py`` uses the same names
for its ViT models. Exactness (outputs equal to the reference model's) is tested in
tests/evaluation with weights and outputs produced by the reference code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from transformers import CLIPConfig, CLIPModel

from sail_core.errors import InputError


@dataclass(frozen=True)
class ClipHeads:
    """What a ViT CLIP checkpoint does not say about itself."""

    vision_heads: int
    text_heads: int
    act: str  # "gelu" (open_clip/LAION models) or "quick_gelu" (OpenAI models)


# open_clip model_configs/ViT-H-14.json: vision width 1280 / head_width 80, text heads 16, nn.GELU.
VIT_H_14 = ClipHeads(vision_heads=16, text_heads=16, act="gelu")
# OpenAI ViT-L/14: heads = width // 64 on both towers, QuickGELU.
VIT_L_14_OPENAI = ClipHeads(vision_heads=16, text_heads=12, act="quick_gelu")

_DIRECT = {
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
# Stored as [in, out] matrices applied as ``x @ proj``; transformers uses Linear weights [out, in].
_TRANSPOSED = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
_BLOCK_NAMES = {
    "ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
    "attn.out_proj": "self_attn.out_proj",
}
_SPECIAL_BUFFERS = {"attn_mask", "visual.attn_mask", "input_resolution", "context_length", "vocab_size"}
_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")


def _count_blocks(state: Mapping[str, torch.Tensor], visual: bool) -> int:
    indices = {int(m.group(2)) for key in state if (m := _BLOCK.match(key)) and bool(m.group(1)) == visual}
    if not indices or indices != set(range(max(indices) + 1)):
        raise InputError(f"checkpoint has no contiguous {'visual' if visual else 'text'} transformer blocks",
                         parameter="source")
    return max(indices) + 1


def _require(state: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise InputError(f"checkpoint lacks {key!r}: not an open_clip/OpenAI ViT CLIP state dict", parameter="source")
    return state[key]


def hf_config_from_open_clip(
    state: Mapping[str, torch.Tensor], heads: ClipHeads, *, bos_token_id: int = 49406, eos_token_id: int = 49407,
    pad_token_id: int = 0,
) -> CLIPConfig:
    conv = _require(state, "visual.conv1.weight")
    vision_width, patch = conv.shape[0], conv.shape[-1]
    grid = math.isqrt(_require(state, "visual.positional_embedding").shape[0] - 1)
    tokens = _require(state, "token_embedding.weight")
    text_width = tokens.shape[1]
    vision = dict(
        hidden_size=vision_width,
        intermediate_size=_require(state, "visual.transformer.resblocks.0.mlp.c_fc.weight").shape[0],
        num_hidden_layers=_count_blocks(state, visual=True), num_attention_heads=heads.vision_heads,
        image_size=grid * patch, patch_size=patch, hidden_act=heads.act, layer_norm_eps=1e-5,
        projection_dim=_require(state, "visual.proj").shape[1],
    )
    text = dict(
        vocab_size=tokens.shape[0], hidden_size=text_width,
        intermediate_size=_require(state, "transformer.resblocks.0.mlp.c_fc.weight").shape[0],
        num_hidden_layers=_count_blocks(state, visual=False), num_attention_heads=heads.text_heads,
        max_position_embeddings=_require(state, "positional_embedding").shape[0], hidden_act=heads.act,
        layer_norm_eps=1e-5, projection_dim=_require(state, "text_projection").shape[1],
        # Not 2: transformers then pools at the first eos_token_id, which is open_clip's argmax of
        # the ids (end-of-text is the largest id) for every tokenized prompt.
        bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
    )
    for tower, width, count in (("vision", vision_width, heads.vision_heads), ("text", text_width, heads.text_heads)):
        if width % count:
            raise InputError(f"{tower} width {width} is not divisible by {count} heads", parameter="heads")
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=text["projection_dim"])


def _block_to_hf(rest: str, value: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    module, _, kind = rest.rpartition(".")
    if module in _BLOCK_NAMES:
        return {f"{prefix}{_BLOCK_NAMES[module]}.{kind}": value}
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        # nn.MultiheadAttention stacks q, k, v along dim 0.
        kind = "weight" if rest.endswith("weight") else "bias"
        q, k, v = value.chunk(3, dim=0)
        return {f"{prefix}self_attn.{n}_proj.{kind}": t for n, t in zip("qkv", (q, k, v))}
    if rest.startswith("ls_"):
        raise InputError("layer-scale blocks (ls_1/ls_2) have no transformers CLIP equivalent", parameter="source")
    raise InputError(f"unknown transformer block parameter {rest!r}", parameter="source")


def open_clip_to_hf_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers ``CLIPModel`` parameter names for an open_clip/OpenAI ViT CLIP state dict."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key in _DIRECT:
            out[_DIRECT[key]] = value
        elif key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = value.t().contiguous()
        elif m := _BLOCK.match(key):
            tower = "vision_model" if m.group(1) else "text_model"
            out.update(_block_to_hf(m.group(3), value, f"{tower}.encoder.layers.{m.group(2)}."))
        elif key not in _SPECIAL_BUFFERS:
            unknown.append(key)
    if unknown:
        raise InputError(f"checkpoint has parameters with no CLIP equivalent: {sorted(unknown)[:8]}",
                         parameter="source")
    return out


def hf_to_open_clip_state_dict(model: CLIPModel) -> dict[str, torch.Tensor]:
    """The inverse mapping, used to check the mapping by round trip."""
    direct = {v: k for k, v in _DIRECT.items()}
    transposed = {v: k for k, v in _TRANSPOSED.items()}
    block_names = {v: k for k, v in _BLOCK_NAMES.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in model.state_dict().items():
        if key.endswith("position_ids"):
            continue
        if key in direct:
            out[direct[key]] = value
        elif key in transposed:
            out[transposed[key]] = value.t().contiguous()
        elif m := re.match(r"^(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", key):
            prefix = ("visual." if m.group(1) == "vision_model" else "") + f"transformer.resblocks.{m.group(2)}."
            if proj := re.match(r"^self_attn\.([qkv])_proj$", m.group(3)):
                qkv.setdefault(f"{prefix}attn.in_proj_{m.group(4)}", {})[proj.group(1)] = value
            else:
                out[f"{prefix}{block_names[m.group(3)]}.{m.group(4)}"] = value
        else:
            raise KeyError(f"no open_clip name for {key}")
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def clip_model_from_open_clip(
    state: Mapping[str, torch.Tensor], heads: ClipHeads, **token_ids: int
) -> CLIPModel:
    """A float32 ``CLIPModel`` holding exactly the tensors of an open_clip/OpenAI state dict."""
    if any(key.startswith("visual.trunk.") or key.startswith("text.") for key in state):
        raise InputError("timm- or HF-text-tower open_clip models are not ViT CLIPs this mapping covers",
                         parameter="source")
    config = hf_config_from_open_clip(state, heads, **token_ids)
    model = CLIPModel(config)
    mapped = open_clip_to_hf_state_dict(state)
    expected = {k for k in model.state_dict() if not k.endswith("position_ids")}
    missing, extra = expected - mapped.keys(), mapped.keys() - expected
    if missing or extra:
        raise InputError(f"checkpoint does not fill the CLIP model: missing {sorted(missing)[:6]}, "
                         f"unexpected {sorted(extra)[:6]}", parameter="source")
    for key, value in mapped.items():
        target = model.state_dict()[key]
        if tuple(value.shape) != tuple(target.shape):
            raise InputError(f"{key}: checkpoint shape {tuple(value.shape)} != model {tuple(target.shape)}",
                             parameter="source")
    model.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=False)
    return model.eval()
