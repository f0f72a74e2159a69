"""mkdocs hooks (``hooks:`` in ``mkdocs.yml``): the pages generated from the code and the results files,
and the repository files outside ``docs/`` that pages link to. Nothing generated is committed."""

from __future__ import annotations

import sys
from pathlib import Path

# mkdocs loads this file by path, not as part of a package: make the repository importable
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mkdocs.structure.files import File, Files  # noqa: E402

from docsgen import cli_reference, config_reference, repo_links, results_tables  # noqa: E402
from docsgen.paths import DOCS, ROOT, markdown_sources, repo_relative  # noqa: E402

GENERATED = {
    "reference/cli.md": cli_reference.render,
    "reference/config.md": config_reference.render,
}


def on_files(files: Files, config) -> Files:
    for uri, render in GENERATED.items():
        files.append(File.generated(config, uri, content=render()))
    # the READMEs beside results and benchmarks are pages of the site even where no page links them
    pages = [repo_relative(p) for p in markdown_sources() if not p.is_relative_to(DOCS)]
    pages += [f"docs/{f.src_uri}" for f in files.documentation_pages() if f.abs_src_path]
    wanted = repo_links.closure(pages) | {p for p in pages if not p.startswith("docs/")}
    for path in sorted(wanted):
        uri = repo_links.site_uri(path)
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(ROOT / path)))
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    source = page.file.abs_src_path
    if source is None:  # a generated page: its links are already the site's
        return markdown
    markdown = results_tables.expand(markdown, ROOT)
    return repo_links.rewrite(markdown, repo_relative(Path(source)))
