"""Pipeline timings in a copy of the project, on a tiny mirror (slow: runs DVC)."""

import pytest

from benchmarks import pipeline_timings


@pytest.mark.slow
def test_pipeline_figures_on_a_tiny_mirror(tmp_path, tiny_mirror):
    params = {
        "data": {"dataset": "tiny", "validation_size": 20},
        "train": {"steps": 4, "eval_every": 2, "batch_size": 8},
    }
    catalog = {"tiny": tiny_mirror.entry}
    project = tmp_path / "project"
    figures = pipeline_timings.pipeline_figures(project, tiny_mirror.root, params, catalog)
    assert set(figures) == {
        "download_preprocess_seconds", "noop_repro_seconds", "train_peak_memory_mib",
    }  # fmt: skip
    assert all(value > 0 for value in figures.values()), figures
    assert figures["train_peak_memory_mib"] > 100, "TensorFlow alone takes more"
    assert (tmp_path / "project" / "data" / "processed" / "train.npz").is_file()
