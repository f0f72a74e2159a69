"""Our scorers against the reference packages' own outputs.

fixtures/ was written by make_reference_fixtures.py in an environment holding the reference
packages (hpsv2 1.2.0, image-reward 1.5 with timm 0.6.13 and fairscale, openai-clip, torchmetrics
1.9.0, transformers 4.45.2; see README.md). It ran each package's scoring code on tiny random
models of the real architectures and stored their weights, inputs and scores. Here our scorers load
the same weights through the same loading/mapping code as real checkpoints and must reproduce the
scores, the token ids and the preprocessed pixels.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sail_core.evaluation.scorers import clip_common
from sail_core.evaluation.scorers.aesthetic import AestheticScorer
from sail_core.evaluation.scorers.base import Runtime
from sail_core.evaluation.scorers.clip_convert import ClipHeads, clip_model_from_open_clip
from sail_core.evaluation.scorers.clipscore import ClipScoreScorer
from sail_core.evaluation.scorers.heads import head_from_state_dict
from sail_core.evaluation.scorers.hpsv2 import HPSv2Scorer
from sail_core.evaluation.scorers.imagereward import ImageRewardModel, ImageRewardScorer
from sail_core.evaluation.scorers.pickscore import PickScoreScorer
from sail_core.evaluation.scorers.preprocess import resize_center_crop, resize_longest_pad
from sail_core.evaluation.scorers.tiny import add_blip_special_tokens, bytes_to_unicode

FIXTURES = Path(__file__).parent / "fixtures"
REF = json.loads((FIXTURES / "reference_outputs.json").read_text(encoding="utf-8"))
PROMPTS: list[str] = REF["prompts"]
CPU = Runtime(torch.device("cpu"), torch.float32)


def images() -> list[Image.Image]:
    return [Image.open(FIXTURES / f"image_{i}.png").convert("RGB") for i in range(4)]


def weights(name: str) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(str(FIXTURES / name)).items()}


def assert_pixels(pixels: torch.Tensor, digest: dict) -> None:
    np.testing.assert_allclose(pixels.double().sum(dim=(1, 2)).numpy(), digest["channel_sums"], rtol=1e-9, atol=1e-6)
    np.testing.assert_array_equal(pixels[:, ::37, ::29].flatten().numpy(), np.float32(digest["strided"]))


def open_clip_bpe_tokenizer(tmp_path: Path):
    """transformers' CLIP tokenizer over open_clip's shipped BPE file (the vocabulary of every
    OpenAI/LAION CLIP), located without importing open_clip (whose import needs torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    bpe = Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz" if spec else None
    if bpe is None or not bpe.is_file():
        pytest.skip("open_clip_torch (a project dependency) is not installed: no CLIP BPE vocabulary")
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                         encoding="utf-8")
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(tmp_path), pad_token="!")


def test_hpsv2_matches_hpsv2_package(tmp_path):
    ref = REF["hpsv2"]
    tokenizer = open_clip_bpe_tokenizer(tmp_path)
    scorer = HPSv2Scorer.from_state_dict(weights("hpsv2_tiny.safetensors"), tokenizer, heads=ClipHeads(**ref["heads"]),
                                         version="v2.0")
    # open_clip's SimpleTokenizer ids, including its truncation of the long prompt (end token kept).
    assert scorer.input_ids(PROMPTS).tolist() == ref["token_ids"]
    imgs = images()
    for image, digest in zip(imgs, ref["pixels"]):
        assert_pixels(resize_longest_pad(image, 224), digest)
    pairs = ref["pairs"]
    scores = scorer.score([imgs[i] for i, _ in pairs], [PROMPTS[p] for _, p in pairs])["hpsv2"]
    np.testing.assert_allclose(scores, ref["hpsv2"], rtol=1e-5, atol=2e-4)


def test_imagereward_matches_image_reward_package(tmp_path):
    ref = REF["imagereward"]
    from transformers import BertTokenizer

    (tmp_path / "vocab.txt").write_bytes((FIXTURES / "imagereward_vocab.txt").read_bytes())
    tokenizer = BertTokenizer.from_pretrained(str(tmp_path), do_lower_case=True)
    add_blip_special_tokens(tokenizer)
    med = json.loads((FIXTURES / "imagereward_med_config.json").read_text(encoding="utf-8"))
    model = ImageRewardModel.from_checkpoint(weights("imagereward_tiny.safetensors"), med,
                                             vision_heads=ref["vision_heads"])
    scorer = ImageRewardScorer(model=model, tokenizer=tokenizer, runtime=CPU)
    assert scorer.text_inputs(PROMPTS)["input_ids"].tolist() == ref["token_ids"]
    imgs = images()
    for image, digest in zip(imgs, ref["pixels"]):
        assert_pixels(resize_center_crop(image, 224), digest)
    np.testing.assert_allclose(scorer.score(imgs, PROMPTS)["imagereward"], ref["imagereward"], rtol=1e-5, atol=1e-4)


def test_aesthetic_matches_predictor_formula_on_openai_clip():
    ref = REF["aesthetic"]
    state = weights("aesthetic_tiny.safetensors")
    clip_state = {k[len("clip."):]: v for k, v in state.items() if k.startswith("clip.")}
    head_state = {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")}
    clip = clip_model_from_open_clip(clip_state, ClipHeads(**ref["heads"]), bos_token_id=62, eos_token_id=63,
                                     pad_token_id=0)
    scorer = AestheticScorer(clip=clip, head=head_from_state_dict(head_state), runtime=CPU)
    scores = scorer.score(images())["aesthetic"]
    np.testing.assert_allclose(scores, ref["aesthetic_script"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(scores, ref["aesthetic_package"], rtol=1e-5, atol=1e-4)


def _hf_clip(name: str):
    from transformers import CLIPConfig, CLIPModel

    model = CLIPModel(CLIPConfig.from_json_file(str(FIXTURES / f"{name}_config.json")))
    missing, unexpected = model.load_state_dict(weights(f"{name}_tiny.safetensors"), strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing)
    return model


def _clip_inputs():
    from transformers import CLIPTokenizer

    directory = str(FIXTURES / "clip_tokenizer")
    return clip_common.PilClipImageProcessor.from_pretrained(directory), CLIPTokenizer.from_pretrained(directory)


def test_pickscore_matches_readme_formula_under_transformers_4():
    processor, tokenizer = _clip_inputs()
    scorer = PickScoreScorer(model=_hf_clip("pickscore"), image_processor=processor, tokenizer=tokenizer, runtime=CPU)
    scores = scorer.score(images(), PROMPTS)["pickscore"]
    np.testing.assert_allclose(scores, REF["clip_pairs"]["pickscore"], rtol=1e-5, atol=2e-4)


def test_clipscore_matches_torchmetrics():
    processor, tokenizer = _clip_inputs()
    scorer = ClipScoreScorer(model=_hf_clip("clipscore"), image_processor=processor, tokenizer=tokenizer, runtime=CPU)
    indices = REF["clip_pairs"]["clipscore_prompt_indices"]
    imgs = images()
    scores = scorer.score([imgs[i] for i in indices], [PROMPTS[i] for i in indices])["clipscore"]
    expected = np.maximum(np.asarray(REF["clip_pairs"]["clipscore"]), 0.0)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=2e-4)
