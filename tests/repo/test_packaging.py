"""The wheel installs the library alone: `digits` and every sub-package of it, no generic
top-level names (``stages``, ``review``...) in site-packages; those are the checkout's scripts."""

import shutil
import subprocess
import zipfile
from pathlib import Path

from helpers.paths import REPO_ROOT, uv

FILES = ("pyproject.toml", "README.md")
FOLDERS = ("digits", "stages", "review", "search", "teamstack", "benchmarks")


def test_the_wheel_holds_every_library_module_and_nothing_else(tmp_path):
    # A copy: setuptools writes its own build/ folder, where the checkout keeps uv.
    source = tmp_path / "source"
    for name in FOLDERS:
        shutil.copytree(REPO_ROOT / name, source / name)
    for name in FILES:
        shutil.copy(REPO_ROOT / name, source / name)
    built = subprocess.run(
        [uv(), "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()

    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"digits"}
    modules = {
        path.relative_to(REPO_ROOT).as_posix()
        for path in (REPO_ROOT / "digits").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert modules <= set(names), sorted(modules - set(names))
    assert Path("digits/serving/pyfunc.py").as_posix() in names
