"""The documentation: README.md gets a user running, the MkDocs site in docs/ holds the rest.

The site builds with ``--strict``: a broken link, a missing anchor or a page left out of the
navigation fails (the second test shows that each of them does).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
from helpers.paths import REPO_ROOT
from ruamel.yaml import YAML

README = REPO_ROOT / "README.md"


def build_site(config: Path, site: Path) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` of ``config`` into ``site``."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
         "--site-dir", str(site)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip


def nav_pages() -> list[str]:
    """Every page of mkdocs.yml's navigation, as a path under docs/."""
    config = YAML(typ="safe", pure=True).load((REPO_ROOT / "mkdocs.yml").read_text())
    return [page for entry in config["nav"] for page in entry.values()]


def copy_site_sources(folder: Path) -> Path:
    """mkdocs.yml and docs/ copied into ``folder``; returns the copy's mkdocs.yml."""
    shutil.copy(REPO_ROOT / "mkdocs.yml", folder / "mkdocs.yml")
    shutil.copytree(REPO_ROOT / "docs", folder / "docs")
    return folder / "mkdocs.yml"


def test_site_builds_strict_with_every_page(tmp_path):
    built = build_site(REPO_ROOT / "mkdocs.yml", tmp_path / "site")
    assert built.returncode == 0, built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    for page in nav_pages():
        html = "index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html"
        assert (tmp_path / "site" / html).is_file(), page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("broken link", "missing.md"),
        ("missing anchor", "#no-such-section"),
        ("page not in the navigation", "unlisted.md"),
    ],
)
def test_strict_build_fails_on_a_broken_link_or_an_unlisted_page(tmp_path, change, message):
    config = copy_site_sources(tmp_path)
    docs = tmp_path / "docs"
    if change == "broken link":
        page = docs / "getting-started.md"
        page.write_text(page.read_text() + "\nSee [a page](missing.md).\n")
    elif change == "missing anchor":
        page = docs / "getting-started.md"
        page.write_text(page.read_text() + "\nSee [a section](pipeline.md#no-such-section).\n")
    else:
        (docs / "unlisted.md").write_text("# A page nobody can reach\n")
    built = build_site(config, tmp_path / "site")
    assert built.returncode != 0
    assert message in built.stderr, built.stderr


def test_readme_is_short_and_links_to_every_page_of_the_site():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    missing = [link for link in local if not (REPO_ROOT / link).exists()]
    assert missing == []
    linked = {Path(link).as_posix() for link in local}
    assert {f"docs/{page}" for page in nav_pages()} <= linked


def test_readme_gives_both_quick_start_commands_and_the_offline_route():
    text = README.read_text()
    for command in ("make repro", "make test", "DATA_MIRROR=../shared/datasets make repro",
                    "git add dvc.lock metrics plots params.yaml && git commit"):  # fmt: skip
        assert command in text, command


# How the project was built is not documentation: no issue numbers, no log of earlier runs,
# no dates of measurements, no build machine's paths or load.
HISTORY = re.compile(
    r"\bissue \d+|the run before|\b20\d\d-\d\d-\d\d\b|/work/|load average (of )?\d|"
    r"\bload \d+(-\d+)?\b|\bprevious recipe\b",
    re.IGNORECASE,
)


def test_no_page_speaks_of_how_the_project_was_built():
    pages = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
    found = {
        page.name: HISTORY.findall(page.read_text())
        for page in pages
        if HISTORY.search(page.read_text())
    }
    assert found == {}


# A measured figure in a docstring or comment goes stale; it belongs on docs/performance.md.
FIGURE = re.compile(
    r"\d[\d,.]*\s?images/s|\b\d+(\.\d+)?x\b|\d[\d.]*\s?ms\b|\d[\d.]*\s?GFLOP/s|"
    r"\d+(\.\d+)?% (faster|slower)",
    re.IGNORECASE,
)
CODE_FOLDERS = ("digits", "search", "review", "benchmarks", "stages", "teamstack")


def docstrings_and_comments(source: str) -> list[tuple[int, str]]:
    """(line number, line) of every comment and triple-quoted string in ``source``."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        text = token.string
        is_docstring = token.type == tokenize.STRING and text.lstrip("rbuRBU")[:3] in {
            '"""',
            "'''",
        }
        if token.type == tokenize.COMMENT or is_docstring:
            found += [(token.start[0] + i, line) for i, line in enumerate(text.splitlines())]
    return found


def test_docstrings_and_comments_carry_no_measured_figures():
    figures = [
        f"{path}:{number}: {line.strip()}"
        for folder in CODE_FOLDERS
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        for number, line in docstrings_and_comments(path.read_text())
        if FIGURE.search(line)
    ]
    assert figures == []
