"""Writes tests/evaluation/reference/fixtures/: outputs of the REFERENCE scorer packages, run on tiny
random models of the real architectures, for the equality tests in test_reference_equality.py.

Not collected by pytest and not importable from the project: it needs the reference packages, which
cannot live next to the project's dependencies (see README.md beside this file for the environment
and the exact install commands). Every tensor is rounded to bfloat16-representable float32 values
before the references run, so the weights are stored losslessly as bfloat16 (small files) and the
tests load exactly the numbers the references computed with.

    /work/refenv/bin/python tests/evaluation/reference/make_reference_fixtures.py
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

OUT = Path(__file__).parent / "fixtures"
PROMPTS = [
    "a photo of a cat",
    "An astronaut riding a HORSE on the moon, digital art &amp; concept art",
    "\u201cCurly\u201d quotes, caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u2014 fish & chips",
    " ".join(["a very long prompt about a red fox jumping over a lazy dog in the snowy forest"] * 8),
]
IMAGE_SIZES = [(80, 60), (50, 90), (64, 64), (224, 100)]


def images() -> list[Image.Image]:
    """Smooth patterns plus a little noise: deterministic, compressible, not constant."""
    rng = np.random.default_rng(1234)
    out = []
    for index, (w, h) in enumerate(IMAGE_SIZES):
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        base = np.stack([
            127 + 120 * np.sin(x / (7 + index) + y / 11),
            127 + 120 * np.cos(y / (5 + index)),
            127 + 120 * np.sin((x + y) / (9 + 2 * index)),
        ], axis=-1)
        noisy = base + rng.normal(0, 6, base.shape)
        out.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB"))
    return out


def bf16_exact_(module: torch.nn.Module, seed: int, std: float = 0.2) -> None:
    """Random weights (LayerNorms perturbed too), rounded to bfloat16-representable values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("logit_scale"):
                param.fill_(float(np.log(100.0)))
            elif param.ndim >= 2 or "embedding" in name or "class_embedding" in name or "cls_token" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
            elif name.endswith("weight"):
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
            param.copy_(param.bfloat16().float())


def save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    tensors = {}
    for key, value in state.items():
        if not value.is_floating_point():
            continue
        assert torch.equal(value.bfloat16().float(), value.float()), key
        tensors[key] = value.detach().bfloat16().contiguous()
    save_file(tensors, str(path))


def pixel_digest(pixels: torch.Tensor) -> dict[str, list]:
    return {"channel_sums": pixels.double().sum(dim=(1, 2)).tolist(),
            "strided": pixels[:, ::37, ::29].flatten().tolist()}


def import_imagereward_modules() -> dict[str, types.ModuleType]:
    """The package's model modules without its __init__ (which imports ReFL, diffusers, datasets)."""
    base = importlib.util.find_spec("ImageReward").submodule_search_locations[0]
    for name, sub in (("ImageReward", ""), ("ImageReward.models", "models")):
        module = types.ModuleType(name)
        module.__path__ = [os.path.join(base, sub)]
        sys.modules[name] = module
    return {name: importlib.import_module(f"ImageReward.{path}") for name, path in (
        ("ir", "ImageReward"), ("vit", "models.BLIP.vit"), ("med", "models.BLIP.med"),
        ("aes", "models.AestheticScore"))}


def write_clip_vocab(directory: Path) -> None:
    """The byte-level CLIP vocabulary with no merges (same layout as sail_core's tiny tokenizer)."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    symbols = list(table.values())  # printable bytes first, as CLIP's vocabulary lists them
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------- HPSv2
def hpsv2_fixture(imgs: list[Image.Image], tmp: Path) -> dict:
    from hpsv2 import img_score
    from hpsv2.src.open_clip import get_tokenizer
    from hpsv2.src.open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from hpsv2.src.open_clip.transform import image_transform

    torch.manual_seed(0)
    model = CLIP(
        embed_dim=16,
        vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=8, patch_size=32, image_size=224),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=8, heads=2, layers=2),
        output_dict=True,
    )
    bf16_exact_(model, seed=1)
    model.eval()
    checkpoint = tmp / "hps_tiny.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    # img_score.score() builds its model once into this dict; pre-filling it with the tiny model makes
    # the package's own score() path (transform, tokenizer, checkpoint loading, formula) run on it.
    img_score.model_dict["model"] = model
    img_score.model_dict["preprocess_val"] = image_transform(224, is_train=False, resize_longest_max=True)
    # The 224x100 image is left out: HPSv2's transform does not pad an image whose longest side is
    # already 224, and the reference model then fails on the non-square input.
    pairs = [(0, 0), (1, 1), (2, 2), (0, 3)]
    cosines = [float(img_score.score(imgs[i], PROMPTS[p], cp=str(checkpoint))[0]) for i, p in pairs]
    tokenizer = get_tokenizer("ViT-H-14")
    preprocess = img_score.model_dict["preprocess_val"]
    save_state(model.state_dict(), OUT / "hpsv2_tiny.safetensors")
    return {
        "heads": {"vision_heads": 4, "text_heads": 2, "act": "gelu"},
        "token_ids": tokenizer(PROMPTS).tolist(),
        "pixels": [pixel_digest(preprocess(img)) for img in imgs[:3]],
        "pairs": pairs,
        "hpsv2": [100 * c for c in cosines],
    }


# --------------------------------------------------------------------------------------- ImageReward
def imagereward_fixture(imgs: list[Image.Image], tmp: Path, modules: dict) -> dict:
    from transformers import BertTokenizer

    ir, vit, med = modules["ir"], modules["vit"], modules["med"]
    words = ["photo", "cat", "astronaut", "riding", "horse", "moon", "digital", "art", "concept", "quotes",
             "cafe", "fox", "red", "dog", "snow", "##s", "the", "on", "of", "a", "an", "very", "long", "prompt"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    vocab += list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = list(dict.fromkeys(vocab))
    vocab_file = OUT / "imagereward_vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab_file))  # the slow tokenizer ImageReward's init_tokenizer uses
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    med_config = {
        "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
        "layer_norm_eps": 1e-12, "max_position_embeddings": 64, "model_type": "bert", "num_attention_heads": 4,
        "num_hidden_layers": 2, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": len(tokenizer),
        "encoder_width": 32, "add_cross_attention": True,
    }
    (OUT / "imagereward_med_config.json").write_text(json.dumps(med_config, indent=1), encoding="utf-8")
    torch.manual_seed(0)
    visual = vit.VisionTransformer(img_size=224, patch_size=16, embed_dim=32, depth=2, num_heads=4)
    config = med.BertConfig.from_dict(med_config)
    text = med.BertModel(config=config, add_pooling_layer=False)
    blip = torch.nn.Module()
    blip.visual_encoder, blip.text_encoder = visual, text
    blip.vision_proj, blip.text_proj = torch.nn.Linear(32, 8), torch.nn.Linear(32, 8)  # in BLIP_Pretrain, unused
    blip.tokenizer = tokenizer
    model = ir.ImageReward.__new__(ir.ImageReward)
    torch.nn.Module.__init__(model)
    model.device, model.blip, model.preprocess = "cpu", blip, ir._transform(224)
    model.mlp = ir.MLP(32)
    # The constants ImageReward.__init__ sets (constructing the class would build a full ViT-L).
    model.mean, model.std = 0.16717362830052426, 1.0333394966054072
    bf16_exact_(model, seed=2)
    model.eval()
    with torch.no_grad():
        rewards = [float(model.score(prompt, img)) for img, prompt in zip(imgs, PROMPTS)]
    save_state(model.state_dict(), OUT / "imagereward_tiny.safetensors")
    ids = tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=35)["input_ids"]
    return {"vision_heads": 4, "token_ids": ids, "pixels": [pixel_digest(model.preprocess(i)) for i in imgs[:3]],
            "imagereward": rewards}


# ------------------------------------------------------------------------------------------ Aesthetic
def aesthetic_fixture(imgs: list[Image.Image], tmp: Path, modules: dict) -> dict:
    import clip
    from clip.clip import _transform

    aes = modules["aes"]
    torch.manual_seed(0)
    model = clip.model.CLIP(embed_dim=16, image_resolution=224, vision_layers=2, vision_width=64, vision_patch_size=32,
                            context_length=77, vocab_size=64, transformer_width=64, transformer_heads=1,
                            transformer_layers=2)
    bf16_exact_(model, seed=3, std=0.1)
    model.eval()
    mlp = aes.MLP(16)
    bf16_exact_(mlp, seed=4, std=0.3)
    mlp.eval()
    scorer = SimpleNamespace(clip_model=model, preprocess=_transform(224), mlp=mlp, device="cpu")
    paths = []
    for index, img in enumerate(imgs):
        path = tmp / f"aesthetic_{index}.png"
        img.save(path)
        paths.append(path)
    with torch.no_grad():
        # image-reward's AestheticScore.score: F.normalize(encode_image) -> MLP.
        package = [float(aes.AestheticScore.score(scorer, "", str(p))) for p in paths]
        # improved-aesthetic-predictor simple_inference.py: numpy ``normalized`` -> MLP.
        script = []
        for img in imgs:
            features = model.encode_image(_transform(224)(img).unsqueeze(0)).cpu().numpy()
            l2 = np.atleast_1d(np.linalg.norm(features, 2, -1))
            l2[l2 == 0] = 1
            script.append(float(mlp(torch.from_numpy(features / np.expand_dims(l2, -1)).float())))
    save_state({**{f"clip.{k}": v for k, v in model.state_dict().items()},
                **{f"head.{k}": v for k, v in mlp.state_dict().items()}}, OUT / "aesthetic_tiny.safetensors")
    return {"heads": {"vision_heads": 1, "text_heads": 1, "act": "quick_gelu"}, "aesthetic_package": package,
            "aesthetic_script": script}


# ------------------------------------------------------------------------------- PickScore, CLIP score
def clip_pair_fixtures(imgs: list[Image.Image], tmp: Path) -> dict:
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizerFast

    vocab_dir = OUT / "clip_tokenizer"
    write_clip_vocab(vocab_dir)
    tokenizer = CLIPTokenizerFast(vocab_file=str(vocab_dir / "vocab.json"), merges_file=str(vocab_dir / "merges.txt"))
    image_processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    image_processor.save_pretrained(str(vocab_dir))
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    results = {}
    for act, key in (("gelu", "pickscore"), ("quick_gelu", "clipscore")):
        config = CLIPConfig(
            text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, max_position_embeddings=77, hidden_act=act,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, projection_dim=16),
            vision_config=dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                               image_size=224, patch_size=32, hidden_act=act, projection_dim=16),
            projection_dim=16,
        )
        torch.manual_seed(0)
        model = CLIPModel(config).eval()
        bf16_exact_(model, seed=5 if key == "pickscore" else 6, std=0.2)
        short = [(img, prompt) for img, prompt in zip(imgs, PROMPTS) if len(tokenizer(prompt)["input_ids"]) <= 77]
        with torch.no_grad():
            if key == "pickscore":
                # PickScore README calc_probs, one prompt at a time as the README calls it.
                scores = []
                for img, prompt in zip(imgs, PROMPTS):
                    image_inputs = processor(images=[img], padding=True, truncation=True, max_length=77,
                                             return_tensors="pt")
                    text_inputs = processor(text=prompt, padding=True, truncation=True, max_length=77,
                                            return_tensors="pt")
                    image_embs = model.get_image_features(**image_inputs)
                    image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
                    text_embs = model.get_text_features(**text_inputs)
                    text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
                    scores.append(float((model.logit_scale.exp() * (text_embs @ image_embs.T)[0])[0]))
                results[key] = scores
            else:
                tensors = [torch.from_numpy(np.asarray(img)).permute(2, 0, 1).contiguous() for img, _ in short]
                per_pair, _ = _clip_score_update(tensors, [p for _, p in short], model, processor)
                results[key] = per_pair.tolist()
                results["clipscore_prompt_indices"] = [PROMPTS.index(p) for _, p in short]
        save_state(model.state_dict(), OUT / f"{key}_tiny.safetensors")
        (OUT / f"{key}_config.json").write_text(config.to_json_string(), encoding="utf-8")
    return results


def main() -> None:
    import tempfile

    import hpsv2
    import torchmetrics
    import transformers

    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    imgs = images()
    for index, img in enumerate(imgs):
        img.save(OUT / f"image_{index}.png")
    modules = import_imagereward_modules()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        record = {
            "prompts": PROMPTS,
            "environment": {
                "torch": torch.__version__, "transformers": transformers.__version__,
                "hpsv2": getattr(hpsv2, "__version__", "1.2.0"), "torchmetrics": torchmetrics.__version__,
                "image-reward": importlib.metadata.version("image-reward"),
                "openai-clip": importlib.metadata.version("openai-clip"),
                "timm": importlib.metadata.version("timm"), "torchvision": importlib.metadata.version("torchvision"),
            },
            "hpsv2": hpsv2_fixture(imgs, tmp_path),
            "imagereward": imagereward_fixture(imgs, tmp_path, modules),
            "aesthetic": aesthetic_fixture(imgs, tmp_path, modules),
            "clip_pairs": clip_pair_fixtures(imgs, tmp_path),
        }
    (OUT / "reference_outputs.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in record.items() if k != "prompts"}, indent=1)[:3000])


if __name__ == "__main__":
    import importlib.metadata

    main()
