"""`dvc plots show` renders every chart with the network off, through the page template
`make plots-page` builds (vega, vega-lite and vega-embed inlined)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.browser import chromium
from helpers.paths import REPO_ROOT
from ruamel.yaml import YAML

from review.plots_page import BUILDS, page

PLOTS_PAGE = REPO_ROOT / "build" / "plots" / "page.html"
NPM_PACKAGES = REPO_ROOT / "build" / "npm"
# Chromium resolves no host name and sends everything else to a closed port.
OFFLINE_FLAGS = ("--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9")
# vega-embed draws each chart into a <canvas> inside its container.
DRAWN = """return Array.from(document.querySelectorAll('canvas'))
    .filter(c => c.width > 50 && c.height > 50).length;"""


def built_page() -> Path:
    if not PLOTS_PAGE.is_file():
        pytest.skip(f"{PLOTS_PAGE} is not built: `make plots-page` (make test runs it)")
    return PLOTS_PAGE


def test_page_inlines_the_three_builds_with_their_licences():
    html = page(NPM_PACKAGES) if NPM_PACKAGES.is_dir() else built_page().read_text()
    assert "{plot_divs}" in html and "{scripts}" not in html
    assert "cdn.jsdelivr" not in html and html.count("<script>") == len(BUILDS)
    for name in BUILDS:
        assert f"<!--\n{name} " in html
    assert html.count("BSD-3-Clause") >= len(BUILDS)


def page_specs(html: str) -> dict[str, dict]:
    """The vega-lite specs of a ``dvc plots show`` page, by title."""
    decoder = json.JSONDecoder()
    specs = []
    for part in html.split("var spec = ")[1:]:
        specs.append(decoder.raw_decode(part)[0])
    return {spec["title"]["text"]: spec for spec in specs}


def curves_project(root: Path) -> dict:
    """A DVC repository at ``root`` with this project's plot definitions and templates and a
    two-row training history; returns the curve plots' definitions, by plot name."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    bin_dir = Path(sys.executable).parent
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([bin_dir / "dvc", "init", "-q"], cwd=root, env=env, check=True)
    (root / ".dvc" / "plots").mkdir()
    for template in (REPO_ROOT / ".dvc" / "plots").glob("*.json"):
        (root / ".dvc" / "plots" / template.name).write_text(template.read_text())
    yaml = YAML(typ="safe", pure=True)
    plots = yaml.load((REPO_ROOT / "dvc.yaml").read_text())["plots"]
    curves = [p for p in plots if isinstance(p, dict) and "train_history.csv" in str(p)]
    with (root / "dvc.yaml").open("w") as stream:
        yaml.dump({"plots": curves}, stream)
    (root / "plots").mkdir()
    (root / "plots" / "train_history.csv").write_text(
        "step,train_loss,train_accuracy,val_loss,val_accuracy\n"
        "10,2.1,0.30,2.2,0.25\n20,1.5,0.50,1.6,0.45\n"
    )
    return {name: plot for entry in curves for name, plot in entry.items()}


def test_curves_are_coloured_by_split_with_titled_axes(tmp_path: Path):
    template = built_page()
    curves = curves_project(tmp_path / "repo")
    assert set(curves) == {"accuracy", "loss"}
    dvc = [str(Path(sys.executable).parent / "dvc")]
    root = tmp_path / "repo"
    subprocess.run([*dvc, "config", "--local", "plots.html_template", str(template)],
                   cwd=root, check=True)  # fmt: skip
    subprocess.run([*dvc, "plots", "show"], cwd=root, check=True, capture_output=True)
    index = root / "dvc_plots" / "index.html"
    html = index.read_text()
    assert "cdn.jsdelivr" not in html and "<script src" not in html

    specs = page_specs(html)
    assert set(specs) == {plot["title"] for plot in curves.values()}
    for plot in curves.values():
        spec = specs[plot["title"]]
        encoding = spec["encoding"]
        assert encoding["x"]["title"] == plot["x_label"] == "optimizer step"
        assert encoding["y"]["title"] == plot["y_label"] != "y"
        # Colour tells the splits apart, dash the revisions (DVC's own template: colour=rev).
        assert encoding["color"]["field"] == "split"
        assert encoding["color"]["scale"]["domain"] == ["training", "validation"]
        assert len(set(encoding["color"]["scale"]["range"])) == 2
        assert encoding["strokeDash"]["field"] == "rev"
        (split,) = [step for step in spec["transform"] if step.get("as") == "split"]
        assert split["calculate"] == (
            "indexof(datum.field, 'val_') === 0 ? 'validation' : 'training'"
        )
        fields = {row["field"] for row in spec["data"]["values"]}
        (columns,) = plot["y"].values()
        assert fields == set(columns) and {name[:4] for name in fields} == {"trai", "val_"}
    assert drawn_charts(index.as_uri(), len(curves)) == len(curves)


def drawn_charts(url: str, expected: int = 3) -> int:
    """Canvases drawn on the page at ``url`` within 20 s, by a browser without network."""
    with chromium(extra_flags=OFFLINE_FLAGS) as driver:
        driver.get(url)
        deadline = time.monotonic() + 20
        count = driver.execute_script(DRAWN)
        while count < expected and time.monotonic() < deadline:
            time.sleep(0.5)
            count = driver.execute_script(DRAWN)
        return count


@pytest.mark.slow
def test_plots_show_renders_every_chart_offline(committed):
    template = built_page()
    shown = json.loads(committed.run("dvc", "plots", "show", "--json").stdout)
    charts = sum(
        entry.get("type") == "vega" for entries in shown["data"].values() for entry in entries
    )
    assert charts == 3  # accuracy, loss, confusion

    # DVC's own page: its scripts come from a CDN, so offline it draws nothing.
    committed.run("dvc", "plots", "show", "--out", "cdn_plots")
    assert drawn_charts((committed.root / "cdn_plots" / "index.html").as_uri()) == 0

    # As `make plots-page` sets it up in a checkout.
    committed.run("dvc", "config", "--local", "plots.html_template", str(template))
    committed.run("dvc", "plots", "show")
    drawn = drawn_charts((committed.root / "dvc_plots" / "index.html").as_uri(), charts)
    assert drawn == charts
