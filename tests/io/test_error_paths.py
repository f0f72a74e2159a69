"""Errors name the path they are about, and errors a retry would repeat (a full disk, a missing file,
damaged bytes, bad input) are not retried."""

from __future__ import annotations

import errno

import pytest

from sail_core.errors import DiskFullError, InputError, IntegrityError, is_deterministic
from sail_core.io.atomic import atomic_dir, atomic_path, write_text
from sail_core.io.objects import CorruptObjectError
from sail_core.io.remote import MissingObjectError


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_names_the_artifact_being_written(tmp_path):
    target = tmp_path / "round-01" / "pairs.parquet"
    with pytest.raises(DiskFullError) as err, atomic_path(target) as tmp:
        _full(tmp)
    assert str(err.value).startswith(f"{target}: no space left on its file system while writing it ")
    with pytest.raises(DiskFullError, match=str(tmp_path / "steps" / "step-000002")), \
            atomic_dir(tmp_path / "steps" / "step-000002"):
        raise RuntimeError("SafetensorError: I/O error: No space left on device (os error 28)")
    assert not target.exists() and not (tmp_path / "steps" / "step-000002").exists()
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []  # no temporary file left behind
    write_text(tmp_path / "ok.txt", "fine")  # an ordinary write is untouched


@pytest.mark.parametrize("error,deterministic", [
    (DiskFullError("x: no space"), True), (OSError(errno.ENOSPC, "No space left on device"), True),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), True), (FileNotFoundError(2, "No such file", "/x"), True),
    (PermissionError(13, "Permission denied"), True), (InputError("bad"), True), (IntegrityError("rot"), True),
    (CorruptObjectError("rot"), True), (MissingObjectError("gone"), True),
    (ConnectionResetError(104, "Connection reset by peer"), False), (TimeoutError("slow"), False),
    (RuntimeError("a lost worker"), False)])
def test_only_errors_a_retry_can_help_are_retried(error, deterministic):
    from tasks.stage_task import _retry_unless_deterministic

    class FailedState:
        def result(self):
            raise error

    assert is_deterministic(error) is deterministic
    assert _retry_unless_deterministic(None, None, FailedState()) is (not deterministic)
