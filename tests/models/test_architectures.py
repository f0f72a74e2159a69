"""The published architectures: shipped configs unchanged, parameter counts, random-weight folders."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from sail_core.errors import ArtifactExistsError
from sail_core.models.architectures import ARCHITECTURES, PUBLISHED_DIR
from sail_core.models.random_weights import PROVENANCE_FILE, write_component, write_random_model

# The published models' sizes (SD1.5 UNet 859.52M, SDXL UNet 2567.46M, OpenCLIP bigG text encoder with
# projection 694.66M, CLIP ViT-L text encoder 123.06M, SD VAE 83.65M, CLIP ViT-L/14 427.62M).
PUBLISHED_COUNTS = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
             "text_encoder_2": 694_659_840},
    "sdxl-vae-fp16-fix": {"sdxl-vae-fp16-fix": 83_653_863},
    "clip-vit-large-patch14": {"clip-vit-large-patch14": 427_616_513},
}


def _sources_table() -> dict[str, tuple[str, int]]:
    """``path -> (sha256, bytes)`` from the tables of SOURCES.md (a heading names each table's folder)."""
    rows, folder = {}, None
    for line in (PUBLISHED_DIR / "SOURCES.md").read_text().splitlines():
        heading = re.match(r"^## .*`([\w.-]+)/`", line)
        if heading:
            folder = heading.group(1)
        row = re.match(r"^\| `([\w./-]+)` \| `([0-9a-f]{64})` \| (\d+) \|$", line)
        if row and folder:
            rows[f"{folder}/{row.group(1)}"] = (row.group(2), int(row.group(3)))
    return rows


def test_every_shipped_config_is_the_published_file_named_in_sources():
    table = _sources_table()
    shipped = {p.relative_to(PUBLISHED_DIR).as_posix(): p for p in PUBLISHED_DIR.rglob("*.json")}
    assert set(shipped) == set(table)
    assert len(table) == 22
    for name, path in shipped.items():
        data = path.read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == table[name], name


@pytest.mark.parametrize("name", sorted(PUBLISHED_COUNTS))
def test_parameter_counts_are_the_published_models(name):
    assert ARCHITECTURES[name].parameter_counts() == PUBLISHED_COUNTS[name]


def test_sdxl_second_tokenizer_pads_with_exclamation_mark_as_published(tmp_path):
    from transformers import CLIPTokenizer

    arch = ARCHITECTURES["sdxl"]
    for subfolder in ("tokenizer", "tokenizer_2"):
        assert write_component(arch, arch.component(subfolder), tmp_path, seed=0, dtype=torch.float16) == (0, 0)
    first = CLIPTokenizer.from_pretrained(tmp_path / "tokenizer")
    second = CLIPTokenizer.from_pretrained(tmp_path / "tokenizer_2")
    assert (first.pad_token, first.pad_token_id) == ("<|endoftext|>", 49407)
    assert (second.pad_token, second.pad_token_id) == ("!", 0)
    ids = second("a red cube", padding="max_length", max_length=77).input_ids
    # <|startoftext|> a red cube <|endoftext|>, then "!" padding (SD1.5's tokenizer repeats 49407 instead)
    assert ids[:5] == [49406, 320, 736, 11353, 49407] and set(ids[5:]) == {0} and len(ids) == 77
    assert first("a red cube", padding="max_length", max_length=77).input_ids[5:] == [49407] * 72


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_random_vae_is_seeded_loads_with_diffusers_and_follows_the_init_rule(tmp_path):
    from diffusers import AutoencoderKL

    report = write_random_model("sdxl-vae-fp16-fix", tmp_path / "a", seed=3, threads=1)
    weights = tmp_path / "a" / "diffusion_pytorch_model.safetensors"
    assert report.parameters == {"sdxl-vae-fp16-fix": 83_653_863}
    assert report.bytes_written == weights.stat().st_size > 2 * 83_653_863  # fp16 values plus the header
    assert json.loads((tmp_path / "a" / PROVENANCE_FILE).read_text())["seed"] == 3
    published = PUBLISHED_DIR / "sdxl-vae-fp16-fix" / "config.json"
    assert (tmp_path / "a" / "config.json").read_bytes() == published.read_bytes()

    # the same seed gives the same bytes whatever the thread count; another seed other values
    write_random_model("sdxl-vae-fp16-fix", tmp_path / "b", seed=3, threads=2)
    write_random_model("sdxl-vae-fp16-fix", tmp_path / "c", seed=4, threads=1)
    assert _sha(weights) == _sha(tmp_path / "b" / weights.name) != _sha(tmp_path / "c" / weights.name)
    with pytest.raises(ArtifactExistsError):
        write_random_model("sdxl-vae-fp16-fix", tmp_path / "a", seed=3)

    vae = AutoencoderKL.from_pretrained(tmp_path / "a", local_files_only=True, use_safetensors=True,
                                        torch_dtype=torch.float32)
    with safe_open(str(weights), framework="pt") as handle:
        assert set(handle.keys()) == set(vae.state_dict())
        conv = handle.get_tensor("decoder.up_blocks.0.resnets.0.conv1.weight")  # [512, 512, 3, 3]
        norm = handle.get_tensor("decoder.up_blocks.0.resnets.0.norm1.weight")
        bias = handle.get_tensor("decoder.up_blocks.0.resnets.0.conv1.bias")
    assert conv.dtype == torch.float16
    assert conv.float().std().item() == pytest.approx((512 * 9) ** -0.5, rel=0.01)
    assert abs(conv.float().mean().item()) < 1e-4
    assert torch.equal(norm, torch.ones(512, dtype=torch.float16)) and not bias.any()
    assert torch.equal(vae.decoder.up_blocks[0].resnets[0].conv1.weight, conv.float())
    with torch.no_grad():  # the real VAE's shapes: 64 px -> 8x8 latents and back
        latents = vae.encode(torch.rand(1, 3, 64, 64) * 2 - 1).latent_dist.mean
        image = vae.decode(latents).sample
    assert latents.shape == (1, 4, 8, 8) and image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()
