"""What the checkout itself promises: server logs stay out of git, and telemetry is off and documented."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sail_cli.environment import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_server_and_worker_logs_are_ignored_by_git():
    for path in ("logs/prefect-server.log", "logs/worker-gpu0.log"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path


def test_telemetry_is_off_by_default_and_the_readme_says_how():
    assert DEFAULTS["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and DEFAULTS["DO_NOT_TRACK"] == "1"
    script = (ROOT / "deployments" / "start-server.sh").read_text()
    assert 'export PREFECT_SERVER_ANALYTICS_ENABLED="${PREFECT_SERVER_ANALYTICS_ENABLED:-false}"' in script
    assert 'export DO_NOT_TRACK="${DO_NOT_TRACK:-1}"' in (ROOT / "deployments" / "start-workers.sh").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "PREFECT_SERVER_ANALYTICS_ENABLED=false" in readme and "DO_NOT_TRACK=1" in readme
