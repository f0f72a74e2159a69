"""User files key stages by what they hold, not where they are: a moved run or another checkout keeps its keys."""

from __future__ import annotations

import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sail_core.errors import InputError
from sail_core.run import keys
from sail_core.run.keys import file_fingerprint, path_fingerprint


def test_a_moved_or_touched_file_keeps_its_fingerprint_an_edited_one_does_not(tmp_path):
    a = tmp_path / "a" / "prompts.txt"
    a.parent.mkdir()
    a.write_text("a red circle\n")
    b = tmp_path / "elsewhere" / "deeper" / "prompts.txt"
    b.parent.mkdir(parents=True)
    shutil.copyfile(a, b)
    os.utime(b, ns=(1, 1))  # another mtime, as after a copy without -p
    assert file_fingerprint(a) == file_fingerprint(b) == (
        "prompts.txt:13:sha256:" + __import__("hashlib").sha256(b"a red circle\n").hexdigest())
    b.write_text("a red square\n")  # same size, other content
    assert file_fingerprint(b) != file_fingerprint(a)


def test_package_files_are_fingerprinted_by_content():
    labels = path_fingerprint("pkg:sail_core.world/data/labels.parquet")
    assert labels.startswith("labels.parquet:") and ":sha256:" in labels
    model = path_fingerprint("pkg:sail_core.world/base_model")
    assert model.startswith("base_model/:9:sha256:")


def test_large_parquet_files_are_fingerprinted_by_size_and_footer(tmp_path, monkeypatch):
    monkeypatch.setattr(keys, "FULL_HASH_MAX_BYTES", 1)
    keys._fingerprints.clear()
    path = tmp_path / "shard.parquet"
    pq.write_table(pa.table({"caption": ["a", "b", "c"]}), path)
    data = path.read_bytes()
    footer = int.from_bytes(data[-8:-4], "little")
    expected = __import__("hashlib").sha256(data[-8 - footer:]).hexdigest()
    assert file_fingerprint(path) == f"shard.parquet:{len(data)}:parquet-footer:{expected}"
    pq.write_table(pa.table({"caption": ["a", "b", "d"]}), path)  # new statistics: a new footer
    assert file_fingerprint(path).split(":")[-1] != expected
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"\xff" * 64 + (10**6).to_bytes(4, "little") + b"PAR1")
    with pytest.raises(InputError, match=f"file {broken}: not a readable Parquet file"):
        file_fingerprint(broken)


def test_large_other_files_are_fingerprinted_by_sampled_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(keys, "FULL_HASH_MAX_BYTES", 1)
    keys._fingerprints.clear()
    path = tmp_path / "shard.tar"
    path.write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    before = file_fingerprint(path)
    assert before.startswith(f"shard.tar:{2 << 20}:sampled:")
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # the last block is always sampled
    path.write_bytes(bytes(data))
    assert file_fingerprint(path) != before
