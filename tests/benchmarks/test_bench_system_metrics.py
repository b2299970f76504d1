"""The system-metrics benchmark reads the CPU time of MLflow's own monitor thread."""

import time

import mlflow
import pytest

from benchmarks import system_metrics_cost as bench


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh SQLite store with a 1 s sampling interval; MLflow's monitor restored after."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monkeypatch.setattr(SystemMetricsMonitor, "monitor", SystemMetricsMonitor.monitor)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("cost")
    yield
    mlflow.set_tracking_uri(None)


def busy(seconds: float) -> None:
    """Keep this thread busy, as a training loop would."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


def test_each_run_with_system_metrics_reports_its_monitor_threads_cpu_seconds(store):
    seconds = bench.monitor_cpu_seconds()

    off = bench.timed_run(busy, 1.5, system_metrics=False)
    assert seconds == [], "no monitor runs without system metrics"
    on = bench.timed_run(busy, 2.5, system_metrics=True)

    (cpu,) = seconds
    assert 0 < cpu < on, "the monitor's CPU time is its own thread's, not the process's"
    assert off >= 1.5 and on >= 2.5
    run = mlflow.last_active_run()
    history = mlflow.MlflowClient().get_metric_history(
        run.info.run_id, "system/cpu_utilization_percentage"
    )
    assert len(history) >= 2, "the monitor sampled once a second while the run trained"


def test_the_generated_split_has_the_stages_shapes():
    split = bench.generated_split(7)
    assert split.x.shape == (7, 28, 28, 1) and split.y.shape == (7, 10)
    assert split.y.sum(axis=1).tolist() == [1.0] * 7
