"""A successful run prints nothing that reads like a failure."""

from __future__ import annotations

import re
import shutil

import pytest

pytestmark = pytest.mark.slow

# absl's ERROR / FATAL lines (`E0000 00:00:...`), ERROR, `error:` and tracebacks; Python
# warnings (`UserWarning: ...`), MLflow's logged warnings and progress bars; and TensorFlow's
# start-up notices, which digits/runtime/native_log.py filters out (absl's preamble, the oneDNN
# `I0000` line).
ALARMING = re.compile(
    r"^\s*[EFI]\d{4} |\bERROR\b|^error:|Traceback|absl::InitializeLog|Warning: "
    r"|\bWARNING mlflow|Downloading artifacts"
)


def test_tracked_pipeline_prints_no_error_lines(project, store_template):
    # Tracking on: logging the model is where TensorFlow used to print an E0000 line.
    project.set_params({"tracking": {"enabled": True}})
    project.run("git", "commit", "-qam", "track with MLflow")
    shutil.copy(store_template, project.root / "mlflow.db")
    result = project.run("dvc", "repro")
    assert "Running stage 'visualize'" in result.stdout
    alarming = [line for line in result.stderr.splitlines() if ALARMING.search(line)]
    alarming += [line for line in result.stdout.splitlines() if ALARMING.search(line)]
    assert alarming == []
