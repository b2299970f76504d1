"""Download settings and checks shared by the download tests."""

from __future__ import annotations

from pathlib import Path

# FetchSettings(**FAST_FETCH): a dead source fails in a second, not a minute.
FAST_FETCH = {"timeout": 1.0, "retries": 2, "backoff": 0.01}


def names_in(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()} if folder.exists() else set()
