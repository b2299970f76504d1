"""uv.lock: current with pyproject.toml, and installable on every platform it names.

Each test asks the package registry (as CI may: no other network), through the uv that
``make install`` puts in build/uv.
"""

import re
import subprocess
from pathlib import Path

import pytest
from helpers.paths import REPO_ROOT, uv

# uv's names for the platforms of [tool.uv] environments (pyproject.toml); TensorFlow's Linux
# wheels are manylinux_2_27.
PLATFORMS = {
    "linux-x86_64": "x86_64-manylinux_2_28",
    "linux-aarch64": "aarch64-manylinux_2_28",
    "macos-arm64": "aarch64-apple-darwin",
    "windows-x86_64": "x86_64-pc-windows-msvc",
}
EXTRAS = ["--extra", "cpu", "--extra", "test", "--extra", "team", "--extra", "search"]


def run_uv(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([uv(), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def unresolved_package(stderr: str) -> str:
    """The package uv names as the cause of a failed resolution (or its whole message)."""
    found = re.search(r"Because ([A-Za-z0-9_.\-]+(?:==\S+)?)", stderr)
    return found.group(1) if found else stderr.strip()


def resolve(requirements: Path, platform: str) -> subprocess.CompletedProcess:
    """Resolve pinned ``requirements`` for ``platform`` through the registry."""
    return run_uv(
        "pip", "compile", str(requirements), "--python-platform", platform,
        "--python-version", "3.11", "--no-header", "--quiet",
    )  # fmt: skip


def exported(tmp_path: Path, *extras: str) -> Path:
    """The locked set with ``extras``, as pinned requirements (markers kept)."""
    result = run_uv(
        "export", "--frozen", "--no-hashes", "--no-emit-project", "--no-header", "--quiet", *extras
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "requirements.txt"
    path.write_text(result.stdout)
    return path


def test_the_lock_is_current_with_pyproject():
    result = run_uv("lock", "--check")
    assert result.returncode == 0, f"uv.lock is stale: run `make lock`\n{result.stderr}"


@pytest.mark.parametrize("name", PLATFORMS)
def test_the_locked_set_resolves_on_each_platform(tmp_path, name):
    result = resolve(exported(tmp_path, *EXTRAS), PLATFORMS[name])
    assert result.returncode == 0, (
        f"{name}: {unresolved_package(result.stderr)} does not resolve\n{result.stderr}"
    )
    tensorflow = "tensorflow-cpu" if name.endswith("x86_64") else "tensorflow"
    assert re.search(rf"^{tensorflow}==", result.stdout, re.MULTILINE), result.stdout


def test_the_gpu_extra_resolves_on_linux_x86_64(tmp_path):
    result = resolve(exported(tmp_path, "--extra", "gpu"), PLATFORMS["linux-x86_64"])
    assert result.returncode == 0, unresolved_package(result.stderr)
    assert re.search(r"^tensorflow==", result.stdout, re.MULTILINE)
    assert not re.search(r"^tensorflow-cpu==", result.stdout, re.MULTILINE)
    assert "nvidia-" in result.stdout, "CUDA's libraries from PyPI"


def test_a_package_without_a_wheel_for_the_platform_is_named(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tensorflow-cpu==2.21.0\n")  # no macOS wheel: why markers exist
    result = resolve(requirements, PLATFORMS["macos-arm64"])
    assert result.returncode != 0
    assert unresolved_package(result.stderr) == "tensorflow-cpu==2.21.0"
