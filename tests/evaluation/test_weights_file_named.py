"""A CLIP folder whose weights cannot be read as data (a pickle that would run code) is refused in one
line naming the weights file, not with torch's text alone."""

from __future__ import annotations

import datetime
import pickle

import pytest

from sail_core.errors import InputError
from sail_core.evaluation.scorers.clip_common import load_clip_model, random_clip_model


def test_a_pickled_clip_bin_is_refused_naming_the_file(tmp_path):
    model = random_clip_model(seed=0, vocab_size=64, eos_token_id=2, bos_token_id=1, pad_token_id=0)
    model.config.save_pretrained(tmp_path)
    weights = tmp_path / "pytorch_model.bin"
    weights.write_bytes(pickle.dumps({"not": datetime.datetime(2020, 1, 1)}, protocol=2))  # not tensors: refused unread
    with pytest.raises(InputError) as err:
        load_clip_model(tmp_path, "clip")
    assert str(err.value) == (f"file {weights}, parameter 'clip': the weights are a pickle that cannot be read as "
                              "tensors only (loading it would run code); re-save them as safetensors from a trusted "
                              "environment")
