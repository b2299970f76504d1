import json

import pandas as pd
from helpers.idxdata import write_tiny_splits
from helpers.paramsfile import TRACKING_OFF, params_copy

from stages import train as train_stage


def test_main_writes_every_output(tmp_path):
    data = write_tiny_splits(tmp_path / "processed")
    params_file = params_copy(
        tmp_path,
        {
            "train": {"steps": 6, "eval_every": 3, "conv2_filters": 4, "batch_size": 8},
            **TRACKING_OFF,
        },
    )
    out = {
        "model": tmp_path / "models" / "model.keras",
        "metrics": tmp_path / "metrics" / "train.json",
        "run-facts": tmp_path / "metrics" / "train_run.json",
        "history": tmp_path / "plots" / "history.csv",
        "run": tmp_path / "models" / "mlflow_run.json",
    }
    train_stage.main(
        ["--params", str(params_file), "--data", str(data)]
        + [item for key, path in out.items() for item in (f"--{key}", str(path))]
    )
    assert out["model"].stat().st_size > 10_000
    metrics = json.loads(out["metrics"].read_text())
    assert metrics["steps"] == 6 and metrics["stopped_step"] == 6
    run_facts = json.loads(out["run-facts"].read_text())
    assert run_facts["parameters"] > 0 and run_facts["images_per_second"] > 0
    assert not set(metrics) & set(run_facts), "a run fact is no DVC metric"
    machine = run_facts["machine"]  # what explains the run's speed and its last digits
    assert set(machine) >= {"cpu", "instruction_set", "bfloat16_units", "onednn", "tensorflow"}
    assert machine["cpu"] and machine["tensorflow"]
    history = pd.read_csv(out["history"])
    assert list(history["step"]) == [3, 6]
    assert json.loads(out["run"].read_text()) == {"run_id": None}
    leftovers = [p.name for p in tmp_path.rglob(".*tmp*")]
    assert leftovers == [], "no temporary files stay behind"
