"""Stage command lines: every option explained, and ``--help`` answered before any heavy
import (STYLE.md rule 11; the time it takes is measured by ``make bench``)."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

import pytest
from helpers.paths import REPO_ROOT

STAGES = ["download", "preprocess", "train", "evaluate", "visualize"]
HEAVY = ["tensorflow", "keras", "mlflow", "sklearn", "matplotlib", "pandas"]

# Runs a stage's --help as `python -m` does, then lists the heavy modules it imported.
PROBE = """
import json, runpy, sys
sys.argv = ["stage", "--help"]
try:
    runpy.run_module("stages.{stage}", run_name="__main__")
except SystemExit:
    pass
print(json.dumps([name for name in {heavy} if name in sys.modules]))
"""


@pytest.mark.parametrize("stage", STAGES)
def test_help_imports_nothing_heavy(stage: str):
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(stage=stage, heavy=HEAVY)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    usage, _, imported = result.stdout.rpartition("\n[")
    assert "usage:" in usage
    assert json.loads("[" + imported) == []


@pytest.mark.parametrize("stage", STAGES)
def test_every_option_has_help_text(stage: str, monkeypatch: pytest.MonkeyPatch):
    seen: list[argparse.ArgumentParser] = []

    def capture(parser, args=None, namespace=None):
        seen.append(parser)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    module = importlib.import_module(f"stages.{stage}")
    with pytest.raises(SystemExit):
        module.main([])
    (parser,) = seen
    options = [action for action in parser._actions if action.option_strings]
    assert any("--params" in action.option_strings for action in options)
    for action in options:
        assert action.help and len(action.help) > 10, action.option_strings
