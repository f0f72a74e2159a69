"""The documentation site builds with ``mkdocs build --strict``: a broken link, a missing anchor, a
results table that is gone or a generated page that fails stops it."""

from __future__ import annotations

import os
import subprocess
import sys

from docsgen.paths import ROOT


def test_the_site_builds_strictly_with_its_generated_pages(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    for page in ("reference/cli/index.html", "reference/config/index.html", "results/index.html",
                 "repo/experiments/results/claims/index.html"):
        assert (site / page).is_file(), page
    cli = (site / "reference/cli/index.html").read_text()
    assert "sail run" in cli and "--run-name" in cli
    assert "reward.k_draws" in (site / "reference/config/index.html").read_text()
    results = (site / "results/index.html").read_text()
    assert "alpha0-resets" in results and "results-table:" not in results  # the tables were filled in
