"""Values given to make (BASE, MODEL, STACK_DIR, ...) reach the commands as they were typed:
through the environment, never pasted into a shell line where a backquote would run."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.makeruns import make_calls


def hostile(marker: Path) -> str:
    """A value that runs ``touch marker`` wherever a shell reads it inside double quotes.

    Given on make's command line: make turns ``$$`` into ``$``.
    """
    return f'x`touch {marker}` $$(touch {marker}) "; touch {marker}; "'


def typed(value: str) -> str:
    """What a command should receive for ``value``: make's ``$$`` is ``$``."""
    return value.replace("$$", "$")


def option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


@pytest.mark.parametrize(
    ("target", "variable", "flag", "module"),
    [
        ("report", "BASE", "--base", "review.report"),
        ("report", "ALLOWED_DROP", "--allowed-drop", "review.report"),
        ("check-metrics", "BASE", "--base", "review.gate"),
        ("serve", "MODEL", "--model", "digits.serving.server"),
        ("serve", "PORT", "--port", "digits.serving.server"),
        ("stack", "STACK_DIR", "--dir", "teamstack.stack"),
        ("stack-down", "STACK_DIR", "--dir", "teamstack.stack"),
        ("promote", "NAME", "--name", "digits.tracking.promote"),
        ("promote", "VERSION", "--version", "digits.tracking.promote"),
        ("promote", "ALIAS", "--alias", "digits.tracking.promote"),
        ("best", "METRIC", "--metric", "search.best"),
        ("search", "TRIALS", "--trials", "search.tune"),
    ],
)
def test_a_value_with_backquotes_is_one_argument_and_runs_nothing(
    target, variable, flag, module, tmp_path
):
    marker = tmp_path / "ran"
    value = hostile(marker)
    calls = make_calls(target, [f"{variable}={value}"], tmp_path)
    assert not marker.exists(), f"make {target} {variable}=... ran a command from the value"
    (words,) = [call for call in calls if module in call]
    assert option(words, flag) == typed(value)
