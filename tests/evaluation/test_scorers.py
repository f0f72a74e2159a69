"""Each scorer on random weights of its real architecture: the formula against a hand computation in
float64 numpy, determinism, batching, local (offline) loading, and clear errors for bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from sail_core.errors import InputError
from sail_core.evaluation.scorers import (
    AestheticScorer,
    ClipScoreScorer,
    HPSv2Scorer,
    ImageRewardScorer,
    ImageScorer,
    PickScoreScorer,
    build_scorer,
    scorer_names,
)
from sail_core.evaluation.scorers.clip_convert import (
    ClipHeads,
    clip_model_from_open_clip,
    hf_to_open_clip_state_dict,
    open_clip_to_hf_state_dict,
)
from sail_core.evaluation.scorers.imagereward import REWARD_MEAN, REWARD_STD
from sail_core.evaluation.scorers.loading import load_state_dict
from sail_core.evaluation.scorers.preprocess import resize_center_crop, resize_longest_pad

PROMPTS = ["a photo of a cat", "An astronaut riding a horse", "two dogs, oil painting", "x"]


def make_images() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    sizes = [(64, 64), (90, 50), (40, 72), (224, 224)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


IMAGES = make_images()


@pytest.fixture(scope="module")
def scorers() -> dict[str, ImageScorer]:
    return {
        "pickscore": PickScoreScorer.random(seed=0, batch_size=3),
        "clipscore": ClipScoreScorer.random(seed=1, batch_size=3),
        "aesthetic": AestheticScorer.random(seed=2, batch_size=3),
        "hpsv2": HPSv2Scorer.random(seed=3, version="v2.0", batch_size=3),
        "imagereward": ImageRewardScorer.random(seed=4, batch_size=3),
    }


def unit64(x: torch.Tensor) -> np.ndarray:
    a = x.detach().double().numpy()
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def clip_embeddings_via_transformers(model, pixels, ids, mask):
    """The embeddings through transformers' public feature API (a separate path from the scorers')."""
    image = model.get_image_features(pixel_values=pixels)
    text = model.get_text_features(input_ids=ids, attention_mask=mask)
    image = getattr(image, "pooler_output", image)
    text = getattr(text, "pooler_output", text)
    return image, text


def linear_stack64(head, x: np.ndarray) -> np.ndarray:
    for index in (0, 2, 4, 6, 7):
        layer = head.layers[index]
        x = x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
    return x[:, 0]


def test_every_scorer_follows_the_interface(scorers):
    for name, scorer in scorers.items():
        assert isinstance(scorer, ImageScorer)
        out = scorer.score(IMAGES, PROMPTS)
        assert set(out) == set(scorer.metrics)
        for values in out.values():
            assert values.dtype == np.float64 and values.shape == (len(IMAGES),)
            assert np.isfinite(values).all()
            assert np.ptp(values) > 1e-4, f"{name}: all images scored alike"


def test_pickscore_is_logit_scale_times_cosine(scorers):
    scorer = scorers["pickscore"]
    with torch.no_grad():
        pixels = scorer.pixel_values(IMAGES)
        text = scorer.text_inputs(PROMPTS)
        image, txt = clip_embeddings_via_transformers(scorer.model, pixels, text["input_ids"], text["attention_mask"])
    expected = np.exp(scorer.model.logit_scale.item()) * (unit64(image) * unit64(txt)).sum(-1)
    np.testing.assert_allclose(scorer.score(IMAGES, PROMPTS)["pickscore"], expected, rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        scorer.model.logit_scale.fill_(np.log(50.0))
    np.testing.assert_allclose(scorer.score(IMAGES, PROMPTS)["pickscore"], expected / 2, rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        scorer.model.logit_scale.fill_(np.log(100.0))


def test_clipscore_is_100_times_clamped_cosine(scorers):
    scorer = scorers["clipscore"]
    with torch.no_grad():
        text = scorer.text_inputs(PROMPTS)
        image, txt = clip_embeddings_via_transformers(scorer.model, scorer.pixel_values(IMAGES), text["input_ids"],
                                                      text["attention_mask"])
    cosine = (unit64(image) * unit64(txt)).sum(-1)
    assert (cosine < 0).any() and (cosine > 0).any(), "the random model should exercise the clamp"
    np.testing.assert_allclose(scorer.score(IMAGES, PROMPTS)["clipscore"], 100 * np.maximum(cosine, 0), atol=1e-4)


def test_aesthetic_is_head_on_normalised_embedding(scorers):
    scorer = scorers["aesthetic"]
    with torch.no_grad():
        pixels = torch.stack([resize_center_crop(i, 224) for i in IMAGES])
        image = scorer.clip.get_image_features(pixel_values=pixels)
        image = getattr(image, "pooler_output", image)
    expected = linear_stack64(scorer.head, unit64(image))
    np.testing.assert_allclose(scorer.score(IMAGES)["aesthetic"], expected, rtol=1e-5, atol=1e-6)
    # Prompts are irrelevant to the aesthetic predictor.
    np.testing.assert_array_equal(scorer.score(IMAGES, ["z"] * 4)["aesthetic"], scorer.score(IMAGES)["aesthetic"])


def test_hpsv2_is_100_times_cosine_without_logit_scale(scorers):
    scorer = scorers["hpsv2"]
    with torch.no_grad():
        pixels = torch.stack([resize_longest_pad(i, 224) for i in IMAGES])
        ids = scorer.input_ids(PROMPTS)
        image, txt = clip_embeddings_via_transformers(scorer.model, pixels, ids, None)
    expected = 100 * (unit64(image) * unit64(txt)).sum(-1)
    before = scorer.score(IMAGES, PROMPTS)["hpsv2"]
    np.testing.assert_allclose(before, expected, rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        scorer.model.logit_scale.fill_(1.234)
    np.testing.assert_array_equal(scorer.score(IMAGES, PROMPTS)["hpsv2"], before)


def test_hpsv2_text_cleaning_follows_open_clip():
    from sail_core.evaluation.scorers.hpsv2 import open_clip_clean

    assert open_clip_clean("  Fish &amp;amp;  Chips\n\tTONIGHT ") == "fish & chips tonight"


def test_imagereward_is_normalised_head_on_cls_feature(scorers):
    scorer = scorers["imagereward"]
    model = scorer.model
    with torch.no_grad():
        pixels = torch.stack([resize_center_crop(i, 224) for i in IMAGES])
        text = scorer.tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
        image_embeds = model.vision(pixel_values=pixels).last_hidden_state
        out = model.text(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                         encoder_hidden_states=image_embeds,
                         encoder_attention_mask=torch.ones(image_embeds.shape[:2], dtype=torch.long))
    cls = out.last_hidden_state[:, 0].double().numpy()
    expected = (linear_stack64(model.head, cls) - REWARD_MEAN) / REWARD_STD
    np.testing.assert_allclose(scorer.score(IMAGES, PROMPTS)["imagereward"], expected, rtol=1e-5, atol=1e-4)


def test_imagereward_text_sees_the_image(scorers):
    scorer = scorers["imagereward"]
    prompts = ["a photo of a cat"] * 2
    scores = scorer.score([IMAGES[0], IMAGES[1]], prompts)["imagereward"]
    assert abs(scores[0] - scores[1]) > 1e-3


@pytest.mark.parametrize("name", ["pickscore", "clipscore", "aesthetic", "hpsv2", "imagereward"])
def test_deterministic_and_batch_size_invariant(scorers, name):
    scorer = scorers[name]
    first = scorer.score(IMAGES, PROMPTS)
    again = scorer.score(IMAGES, PROMPTS)
    for metric in first:
        np.testing.assert_array_equal(first[metric], again[metric])
    single = type(scorer).__new__(type(scorer))
    single.__dict__.update(scorer.__dict__)
    single.batch_size = 1
    one_by_one = single.score(IMAGES, PROMPTS)
    for metric in first:
        np.testing.assert_allclose(one_by_one[metric], first[metric], rtol=1e-5, atol=1e-4)


def test_same_seed_same_scores_different_seed_different_scores():
    a = PickScoreScorer.random(seed=11).score(IMAGES[:2], PROMPTS[:2])["pickscore"]
    b = PickScoreScorer.random(seed=11).score(IMAGES[:2], PROMPTS[:2])["pickscore"]
    c = PickScoreScorer.random(seed=12).score(IMAGES[:2], PROMPTS[:2])["pickscore"]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("name", ["pickscore", "clipscore", "aesthetic", "hpsv2", "imagereward"])
def test_bad_inputs_get_input_errors(scorers, name):
    scorer = scorers[name]
    with pytest.raises(InputError, match="empty batch"):
        scorer.score([], [])
    with pytest.raises(InputError, match="2 images but 1 prompts"):
        scorer.score(IMAGES[:2], PROMPTS[:1])
    with pytest.raises(InputError, match="not a PIL image") as info:
        scorer.score([IMAGES[0], np.zeros((8, 8, 3), np.uint8)], PROMPTS[:2])
    assert info.value.row == 1
    with pytest.raises(InputError, match="no pixels"):
        scorer.score([Image.new("RGB", (0, 0))], PROMPTS[:1])
    with pytest.raises(InputError, match="one string"):
        scorer.score(IMAGES[:1], "a photo of a cat")
    with pytest.raises(InputError, match="not a string"):
        scorer.score(IMAGES[:1], [None])


def test_non_rgb_modes_are_converted():
    scorer = PickScoreScorer.random(seed=0)
    rgb = IMAGES[0]
    rgba = rgb.convert("RGBA")
    np.testing.assert_array_equal(scorer.score([rgba], PROMPTS[:1])["pickscore"],
                                  scorer.score([rgb], PROMPTS[:1])["pickscore"])
    assert np.isfinite(scorer.score([rgb.convert("L"), rgb.convert("P")], PROMPTS[:2])["pickscore"]).all()


def test_registry(scorers):
    assert set(scorer_names()) == {"pickscore", "clipscore", "aesthetic", "imagereward", "hpsv2", "hpsv2.1", "world"}
    hps21 = build_scorer("HPSv2.1", source="random")
    assert hps21.name == "hpsv2.1" and hps21.metrics == ("hpsv21",)
    assert build_scorer("hps", source="random").metrics == ("hpsv2",)
    assert build_scorer("aesthetics", source="random", batch_size=2).batch_size == 2
    with pytest.raises(InputError, match="unknown scorer"):
        build_scorer("fid")
    with pytest.raises(InputError, match="takes no option"):
        build_scorer("pickscore", source="random", clip="x")
    with pytest.raises(InputError, match="batch_size"):
        PickScoreScorer.random(batch_size=0)


def test_missing_local_weights_give_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        build_scorer("aesthetic", source=tmp_path / "nope.pth")
    with pytest.raises(InputError, match="folder has no"):
        build_scorer("hpsv2.1", source=tmp_path)
    with pytest.raises(InputError, match="cannot load a CLIP model"):
        build_scorer("pickscore", source=str(tmp_path))


def test_unsafe_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    # a reference to a callable that runs a shell: what a malicious pickle would call on load
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": os.system}, path)
    with pytest.raises(InputError, match="weights only"):
        load_state_dict(path, parameter="checkpoint")


def test_open_clip_mapping_round_trips_exactly():
    scorer = HPSv2Scorer.random(seed=5)
    open_clip_state = hf_to_open_clip_state_dict(scorer.model)
    assert "attn.in_proj_weight" in next(k for k in open_clip_state if "resblocks.0.attn.in_proj_w" in k)
    assert open_clip_state["visual.proj"].shape == (32, 16)
    back = open_clip_to_hf_state_dict(open_clip_state)
    original = {k: v for k, v in scorer.model.state_dict().items() if not k.endswith("position_ids")}
    assert back.keys() == original.keys()
    for key in original:
        assert torch.equal(back[key], original[key]), key
    rebuilt = clip_model_from_open_clip(open_clip_state, ClipHeads(4, 4, "gelu"), bos_token_id=512, eos_token_id=513,
                                        pad_token_id=513)
    twin = HPSv2Scorer(model=rebuilt, tokenizer=scorer.tokenizer, runtime=scorer.runtime)
    np.testing.assert_array_equal(twin.score(IMAGES, PROMPTS)["hpsv21"], scorer.score(IMAGES, PROMPTS)["hpsv21"])
    with pytest.raises(InputError, match="no CLIP equivalent"):
        open_clip_to_hf_state_dict({**open_clip_state, "visual.head.weight": torch.zeros(1)})


def test_loading_from_local_files_reproduces_scores(tmp_path, scorers):
    # PickScore / CLIP score: transformers folders (what a Hub download holds).
    pick = scorers["pickscore"]
    pick.model.save_pretrained(tmp_path / "pick")
    pick.tokenizer.save_pretrained(tmp_path / "pick")
    pick.image_processor.save_pretrained(tmp_path / "pick")
    loaded = build_scorer("pickscore", source=tmp_path / "pick", processor=tmp_path / "pick")
    np.testing.assert_allclose(loaded.score(IMAGES, PROMPTS)["pickscore"], pick.score(IMAGES, PROMPTS)["pickscore"],
                               rtol=1e-6, atol=1e-5)
    # HPSv2: an open_clip-format {"state_dict": ...} .pt file, as xswu/HPSv2 publishes.
    hps = HPSv2Scorer.random(seed=8, version="v2.0", heads=16)  # ViT-H-14's head counts, tiny widths
    (tmp_path / "hps").mkdir()
    torch.save({"state_dict": hf_to_open_clip_state_dict(hps.model)}, tmp_path / "hps" / "HPS_v2_compressed.pt")
    hps.tokenizer.save_pretrained(tmp_path / "hps_tok")
    loaded = build_scorer("hpsv2", source=tmp_path / "hps", tokenizer=tmp_path / "hps_tok")
    np.testing.assert_allclose(loaded.score(IMAGES, PROMPTS)["hpsv2"], hps.score(IMAGES, PROMPTS)["hpsv2"],
                               rtol=1e-6, atol=1e-5)
    # Aesthetic: a bare head state dict .pth plus a transformers CLIP folder.
    aes = scorers["aesthetic"]
    torch.save(aes.head.state_dict(), tmp_path / "sac+logos+ava1-l14-linearMSE.pth")
    aes.clip.save_pretrained(tmp_path / "clip")
    loaded = build_scorer("aesthetic", source=tmp_path / "sac+logos+ava1-l14-linearMSE.pth", clip=tmp_path / "clip")
    np.testing.assert_allclose(loaded.score(IMAGES)["aesthetic"], aes.score(IMAGES)["aesthetic"], rtol=1e-6, atol=1e-6)
    # ImageReward: ImageReward.pt (BLIP names) + med_config.json in one folder, tokenizer folder.
    ir = ImageRewardScorer.random(seed=9, width=64, heads=1)  # BLIP's head width of 64
    (tmp_path / "ir").mkdir()
    torch.save(imagereward_checkpoint(ir.model), tmp_path / "ir" / "ImageReward.pt")
    text = ir.model.text.config
    (tmp_path / "ir" / "med_config.json").write_text(json.dumps({
        "vocab_size": text.vocab_size, "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
        "max_position_embeddings": text.max_position_embeddings, "layer_norm_eps": text.layer_norm_eps,
        "encoder_width": 768, "add_cross_attention": True}))
    ir.tokenizer.save_pretrained(tmp_path / "ir_tok")
    loaded = build_scorer("imagereward", source=tmp_path / "ir", tokenizer=tmp_path / "ir_tok")
    np.testing.assert_allclose(loaded.score(IMAGES, PROMPTS)["imagereward"], ir.score(IMAGES, PROMPTS)["imagereward"],
                               rtol=1e-6, atol=1e-5)


def imagereward_checkpoint(model) -> dict[str, torch.Tensor]:
    """Our model's weights under ImageReward.pt's names (BLIP timm ViT + med.py BERT + mlp)."""
    inverse_direct = {"embeddings.class_embedding": "cls_token", "embeddings.position_embedding": "pos_embed",
                      "embeddings.patch_embedding.weight": "patch_embed.proj.weight",
                      "embeddings.patch_embedding.bias": "patch_embed.proj.bias",
                      "post_layernorm.weight": "norm.weight", "post_layernorm.bias": "norm.bias"}
    block = {"layer_norm1": "norm1", "layer_norm2": "norm2", "self_attn.qkv": "attn.qkv",
             "self_attn.projection": "attn.proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    out = {}
    for key, value in model.vision.state_dict().items():
        if key in inverse_direct:
            out["blip.visual_encoder." + inverse_direct[key]] = value
        else:
            _, _, index, rest = key.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            out[f"blip.visual_encoder.blocks.{index}.{block[module]}.{kind}"] = value
    out.update({"blip.text_encoder." + k: v for k, v in model.text.state_dict().items()})
    out.update({"mlp." + k: v for k, v in model.head.state_dict().items()})
    out["blip.vision_proj.weight"] = torch.zeros(4, model.vision.config.hidden_size)
    return out


def test_runtime_precision_policy():
    from sail_core.evaluation.scorers.base import Runtime

    assert Runtime.resolve("cpu", torch.float16, torch.float16).dtype == torch.float32
    assert Runtime.resolve("cuda", None, torch.float16).dtype == torch.float16
    assert Runtime.resolve("cuda", torch.bfloat16, torch.float32).dtype == torch.bfloat16
    with pytest.raises(InputError, match="unsupported dtype"):
        Runtime.resolve("cpu", torch.int8, torch.float32)
