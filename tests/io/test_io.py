import pytest
import torch

from sail_core.errors import ArtifactExistsError, InputError
from sail_core.io.atomic import atomic_path, write_text
from sail_core.io.tensors import ShardReader, write_tensors
from sail_core.models.tokenizer import build_clip_tokenizer


def test_finished_artifacts_are_not_overwritten(tmp_path):
    write_text(tmp_path / "a.txt", "one")
    with pytest.raises(ArtifactExistsError):
        write_text(tmp_path / "a.txt", "two")
    assert (tmp_path / "a.txt").read_text() == "one"


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_shard_reader_gathers_rows_across_files(tmp_path):
    write_tensors(tmp_path / "a.safetensors", {"latents": torch.arange(12.0).view(4, 3)})
    write_tensors(tmp_path / "b.safetensors", {"latents": -torch.arange(6.0).view(2, 3)})
    reader = ShardReader(tmp_path, "latents")
    out = reader.gather(["b.safetensors", "a.safetensors", "a.safetensors"], [1, 3, 0])
    assert out.tolist() == [[-3.0, -4.0, -5.0], [9.0, 10.0, 11.0], [0.0, 1.0, 2.0]]
    with pytest.raises(InputError, match="out of range"):
        reader.gather(["b.safetensors"], [2])


def test_clip_tokenizer_from_open_clip_vocabulary_matches_openai_ids(tmp_path):
    tokenizer = build_clip_tokenizer(tmp_path)
    assert len(tokenizer) == 49408
    # ids of OpenAI CLIP's tokenizer (openai/clip-vit-large-patch14) for this text
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
