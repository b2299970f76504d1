"""Give the programs of the project's environment its interpreter, activated or not.

    python -m digits.runtime.venv_hook        # `make install` runs it: writes the .pth file below

DVC runs a stage's ``cmd`` (``exec python -m stages.train ...``) through the shell, which
looks ``python`` up on PATH, and ``dvc queue`` workers start ``dvc`` the same way. Started as
``.venv/bin/dvc`` from a shell where the environment is not activated, DVC would find another
interpreter there, or none, and DVC has no setting for the interpreter of a stage. So
``install()`` writes ``PTH_NAME`` into the environment's site-packages: at start-up, every
interpreter of the environment puts its own folder (``.venv/bin``) first on PATH, as activating
does. The stages and workers that dvc starts then run with the project's interpreter, in the
workspace and in an experiment's temporary copy (``.dvc/tmp/exps/...``) alike, whatever
folder the environment is in.

Written by hand: ``site`` runs a ``.pth`` line that starts with ``import`` at every start-up,
and no packaging tool installs one for an editable project.
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
from pathlib import Path

from digits.errors import PipelineError
from digits.runtime.atomic import atomic_open
from digits.runtime.stopping import run_stage

PTH_NAME = "digits_venv_path.pth"
# One line, run by `site`: the interpreter's folder first on PATH unless it is already first
# (an empty folder, as for an embedded interpreter, is left out: it would mean the cwd).
PTH_LINE = (
    "import os, sys; folder = os.path.dirname(sys.executable); "
    "path = os.environ.get('PATH', os.defpath); "
    "folder and path.split(os.pathsep)[0] != folder and "
    "os.environ.__setitem__('PATH', os.pathsep.join(filter(None, [folder, path])))\n"
)


def install(site_packages: Path) -> Path:
    """Write ``PTH_NAME`` into ``site_packages``; return its path."""
    path = site_packages / PTH_NAME
    with atomic_open(path) as stream:
        stream.write(PTH_LINE)
    return path


def main(argv: list[str] | None = None) -> None:
    """Install the hook into the site-packages of the running interpreter."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    if sys.prefix == sys.base_prefix:
        raise PipelineError(
            f"{sys.executable} is not a virtual environment's: run this with the project's "
            ".venv/bin/python (`make install` does)"
        )
    install(Path(sysconfig.get_path("purelib")))


if __name__ == "__main__":
    sys.exit(run_stage(main))
