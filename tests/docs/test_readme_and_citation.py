"""The README stays a first screen, and the citation metadata names the paper."""

from __future__ import annotations

import yaml

from docsgen.paths import ROOT

PAPER = "https://arxiv.org/abs/2602.05380"


def test_the_readme_is_short_and_links_the_paper_and_the_docs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert PAPER in text and "docs/getting-started.md" in text and "CITATION.cff" in text


def test_citation_cff_is_cff_1_2_0_with_the_paper_as_preferred_citation():
    data = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert data["cff-version"] == "1.2.0" and data["type"] == "software"
    assert {"message", "title", "authors"} <= data.keys() and data["license"] == "Apache-2.0"
    project = yaml.safe_load((ROOT / "pyproject.toml").read_text().split("[project]")[1].split("\n[")[0]
                             .replace(" = ", ": "))
    assert str(data["version"]) == project["version"]
    for entry in (data["preferred-citation"], *data["references"]):
        assert entry["url"] == PAPER and entry["year"] == 2026 and entry["authors"]
        assert any(i["value"] == "arXiv:2602.05380" for i in entry["identifiers"])
