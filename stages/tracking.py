"""MLflow tracking: one run per trained model, reopened by every stage that uses the model.

``train`` opens the run, logs params, per-step metrics, the model and its files, and writes
the run id to ``models/mlflow_run.json``, a DVC output beside the model. ``evaluate`` and
``visualize`` read that file and log into the same run, so what they make from a model always
lands in the run of that model, even when only they rerun. Where runs go, and how the store is
opened safely, is ``stages.mlflow_store``.

MLflow is imported only when tracking is enabled, so ``tracking.enabled: false`` runs the
pipeline without loading it. Stages call this module from their ``main()`` only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from stages.atomic import write_json
from stages.errors import DataError, PipelineError, Terminated
from stages.mlflow_store import Store, find_run, open_store, resolve_store
from stages.params import Params, TrackingParams

RUN_FILE = Path("models/mlflow_run.json")
MODEL_ARTIFACT = "model"
# Distributions a logged Keras model needs, each as its alternatives in order of preference.
MODEL_DISTRIBUTIONS = (("keras",), ("tensorflow-cpu", "tensorflow"))


def format_param(value: Any) -> str:
    """A param value as params.yaml spells it (``true``, ``[0, 13]``, ``0.0001``, ``cnn``)."""
    if isinstance(value, bool | tuple | list):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(value)


def dotted_params(params: Params, sections: tuple[str, ...]) -> dict[str, str]:
    """``{"train.fc_size": "128", ...}`` for the given (loaded) sections."""
    flat = {}
    for name in sections:
        section = getattr(params, name)
        if section is None:
            raise ValueError(f"section {name!r} was not loaded; pass it to load_params")
        for key, value in dataclasses.asdict(section).items():
            flat[f"{name}.{key}"] = format_param(value)
    return flat


def top_level_metrics(values: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The numbers at the top of a metrics file, as ``{prefix + key: value}``.

    Nested tables (per-class scores) stay in the logged file: as metrics, each row becomes a
    chart section in the UI, ahead of the learning curves.
    """
    return {
        prefix + key: float(value)
        for key, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def run_tags(environ: Mapping[str, str], commit: str | None) -> dict[str, str]:
    """Tags of a new run: the git commit and, for ``dvc exp run``, the experiment's name."""
    tags = {}
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if environ.get("DVC_EXP_NAME"):
        tags["dvc.experiment"] = environ["DVC_EXP_NAME"]
    return tags


def git_commit(environ: Mapping[str, str], cwd: Path) -> str | None:
    """The commit the code comes from: an experiment's baseline, else ``HEAD``, else None."""
    if environ.get("DVC_EXP_BASELINE_REV"):
        return environ["DVC_EXP_BASELINE_REV"]
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else None


def file_md5(path: str | os.PathLike[str]) -> str:
    """MD5 of a file's bytes: the name DVC gives the file in its cache."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pinned_requirements() -> list[str]:
    """``dist==version`` of the installed Keras and TensorFlow, which a logged model needs.

    Given to MLflow so that it does not infer them, which reloads the model in a subprocess
    (measured: 20 s for a model that logs in 1 s with pinned requirements). Looked up by
    distribution name: mapping modules to distributions scans every installed package (2 s).
    """
    pins = []
    for candidates in MODEL_DISTRIBUTIONS:
        for name in candidates:
            try:
                pins.append(f"{name}=={importlib.metadata.version(name)}")
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return pins


def read_run_file(path: str | os.PathLike[str]) -> str | None:
    """The run id that ``train`` recorded, or None when it ran with tracking off.

    Raises:
        DataError: The file is missing or damaged.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        run_id = record["run_id"]
    except FileNotFoundError:
        raise DataError(f"{path} not found: run `dvc repro train` first") from None
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{path} is damaged ({error!r}); rerun `dvc repro --force train`"
        ) from None
    if run_id is not None and not isinstance(run_id, str):
        raise DataError(f"{path}: run_id must be a string or null, got {run_id!r}")
    return run_id


class Tracker:
    """Logging calls into one MLflow run; every method does nothing when tracking is off."""

    def __init__(self, run_id: str | None = None, store: Store | None = None):
        self.run_id = run_id
        self.store = store

    def __str__(self) -> str:
        if self.run_id is None:
            return "MLflow tracking is off (tracking.enabled: false)"
        return f"MLflow run {self.run_id} in {self.store.tracking_uri}"

    def log_params(self, params: Params, sections: tuple[str, ...]) -> None:
        """Log the sections' params under dotted names.

        MLflow params cannot change. When a stage reruns on the same model with a different
        value (only ``evaluate`` changed, say), the first value stays and the tag
        ``rerun.<key>`` holds the one the latest rerun used.
        """
        if self.run_id is None:
            return
        import mlflow

        client = mlflow.MlflowClient()
        logged = client.get_run(self.run_id).data
        new, changed, same = {}, {}, []
        for key, value in dotted_params(params, sections).items():
            if key not in logged.params:
                new[key] = value
            elif logged.params[key] != value:
                changed[f"rerun.{key}"] = value
            elif f"rerun.{key}" in logged.tags:
                same.append(f"rerun.{key}")
        if new:
            mlflow.log_params(new)
        if changed:
            mlflow.set_tags(changed)
        for tag in same:
            client.delete_tag(self.run_id, tag)

    def log_step(self, row: Mapping[str, Any]) -> None:
        """Log one row of the training history at its step (an ``on_eval`` callback)."""
        if self.run_id is None:
            return
        import mlflow

        names = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
        mlflow.log_metrics({name: float(row[name]) for name in names}, step=int(row["step"]))

    def log_metrics(self, values: Mapping[str, Any], prefix: str) -> None:
        """Log the top-level numbers of a metrics file, named ``prefix + key``."""
        if self.run_id is None:
            return
        import mlflow

        mlflow.log_metrics(top_level_metrics(values, prefix))

    def log_data(self, files: Mapping[str, Path], dataset: str | None = None) -> None:
        """Tag the run with the dataset's name and ``dataset.<split>_md5`` of each file."""
        if self.run_id is None:
            return
        import mlflow

        tags = {f"dataset.{split}_md5": file_md5(path) for split, path in files.items()}
        if dataset is not None:
            tags["dataset"] = dataset
        mlflow.set_tags(tags)

    def log_files(self, *paths: str | os.PathLike[str]) -> None:
        """Log files or folders as artifacts, at their paths relative to the working folder."""
        if self.run_id is None:
            return
        import mlflow

        cwd = Path.cwd().resolve()
        for path in map(Path, paths):
            absolute = path.resolve()
            # plots/confusion.png -> artifact "plots/confusion.png"; outside the repo: top level
            inside = absolute.is_relative_to(cwd) and absolute != cwd
            name = absolute.relative_to(cwd) if inside else Path(absolute.name)
            folder = None if name.parent == Path() else name.parent.as_posix()
            if absolute.is_dir():
                mlflow.log_artifacts(str(absolute), artifact_path=name.as_posix())
            else:
                mlflow.log_artifact(str(absolute), artifact_path=folder)

    def log_model(self, model, example, registered_name: str = "") -> None:
        """Log a Keras model (MLflow's Keras flavour), its summary, signature and example.

        Args:
            model: The trained ``keras.Model``.
            example: A batch of inputs, e.g. (1, 28, 28, 1) float32; it becomes the model's
                input example, and with the model's output on it, its signature.
            registered_name: Register the model under this name; "" does not register.
        """
        if self.run_id is None:
            return
        import keras
        import mlflow
        from mlflow.models import Model, infer_signature

        lines: list[str] = []
        model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
        mlflow.log_text("\n".join(lines) + "\n", "model_summary.txt")
        signature = infer_signature(example, model.predict(example, verbose=0))
        # MLflow checks the example by predicting on it; keep Keras's progress bar quiet.
        interactive = keras.utils.is_interactive_logging_enabled()
        keras.utils.disable_interactive_logging()
        try:
            Model.log(
                artifact_path=None,
                name=MODEL_ARTIFACT,
                flavor=_KerasFlavour,
                model=model,
                signature=signature,
                input_example=example,
                pip_requirements=pinned_requirements(),
                registered_model_name=registered_name or None,
            )
        finally:
            if interactive:
                keras.utils.enable_interactive_logging()


class _KerasFlavour:
    """``mlflow.keras`` with the model folder created first.

    ``mlflow.keras.log_model`` writes the input example before it creates the model's folder
    and fails (mlflow/mlflow#16183, open in MLflow 3.17); ``Model.log`` with this flavour does
    the same as ``mlflow.keras.log_model`` otherwise.
    """

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path: str, **kwargs: Any) -> None:
        import mlflow.keras

        Path(path).mkdir(parents=True, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)


@contextlib.contextmanager
def new_run(tracking: TrackingParams, run_file: str | os.PathLike[str]) -> Iterator[Tracker]:
    """Open the run of a model being trained; record its id in ``run_file`` on success.

    The run is named after the DVC experiment when there is one and tagged with the git
    commit. It ends FINISHED when the block completes, KILLED on Ctrl-C or SIGTERM, FAILED
    on any other exception. With tracking off, ``run_file`` records ``null``.
    """
    if not tracking.enabled:
        yield Tracker()
        write_json(run_file, {"run_id": None})
        return
    import mlflow

    store = resolve_store(os.environ, Path.cwd())
    experiment_id = open_store(store, tracking.experiment)
    run = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=os.environ.get("DVC_EXP_NAME") or None,
        tags=run_tags(os.environ, git_commit(os.environ, Path.cwd())),
    )
    with _ending(run.info.run_id):
        yield Tracker(run.info.run_id, store)
        write_json(
            run_file,
            {"run_id": run.info.run_id, "experiment": tracking.experiment},
        )


@contextlib.contextmanager
def model_run(tracking: TrackingParams, run_file: str | os.PathLike[str]) -> Iterator[Tracker]:
    """Reopen the run that ``train`` recorded in ``run_file``, for a stage that uses the model.

    The run ends as ``new_run`` describes: FINISHED, KILLED or FAILED.

    Raises:
        PipelineError: Tracking is on but the model was trained with it off, or the run is
            not in the store (another machine's run file, or a different store).
    """
    if not tracking.enabled:
        yield Tracker()
        return
    run_id = read_run_file(run_file)
    if run_id is None:
        raise PipelineError(
            f"{run_file}: the model was trained with tracking off; "
            "rerun `dvc repro --force train` to track it"
        )
    import mlflow

    store = resolve_store(os.environ, Path.cwd())
    find_run(store, run_id, run_file)
    mlflow.start_run(run_id=run_id)
    with _ending(run_id):
        yield Tracker(run_id, store)


@contextlib.contextmanager
def _ending(run_id: str) -> Iterator[None]:
    """End the active run FINISHED, KILLED (Ctrl-C, SIGTERM) or FAILED, as the block ends."""
    import mlflow

    try:
        yield
    except (KeyboardInterrupt, Terminated):
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")
