"""Running a ``sail`` command in the test process, as the ``sail`` script would (``sys.exit(main(argv))``),
with its output captured: an error test needs no new interpreter importing torch, diffusers and Prefect."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from pathlib import Path

from sail_cli.main import main


def sail(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``sail ARGS`` in this process: its exit code, stdout and stderr as a finished process would give them.
    ``env`` entries are set for the command's duration only."""
    out, err = io.StringIO(), io.StringIO()
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _working_directory(cwd):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's usage errors
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(["sail", *args], code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _working_directory(cwd: Path | None):
    before = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The one line a failed command printed on stderr (exit code 1, no traceback)."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return lines[0]
