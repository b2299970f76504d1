"""Logging calls into one MLflow run: params, step metrics, data, files and the model.

A ``Tracker`` is what ``digits.tracking.stage_run.new_run`` and ``model_run`` hand a stage; with
tracking off they hand it a ``NullTracker``, whose methods do nothing, so a stage's code is the
same either way. MLflow is
imported inside the methods, only when there is a run.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from digits.errors import DISK_FULL, write_error
from digits.params import Params
from digits.runtime.atomic import Outputs
from digits.runtime.stopping import signals_deferred
from digits.tracking.mlflow_store import Store
from digits.tracking.run_values import (
    dotted_params,
    file_md5,
    pinned_requirements,
    top_level_metrics,
)

MODEL_ARTIFACT = "model"  # the name of a logged model when none is given
AMBIGUOUS_LOCAL_SOURCE = "The specified dataset source can be interpreted in multiple ways"


@contextlib.contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Show only errors of the ``logging`` logger ``name`` during the block."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def uninterrupted(write: Callable) -> Callable:
    """Hold back Ctrl-C, SIGTERM and SIGHUP while ``write`` talks to the store; act on them
    after it.

    A stop raised in the middle of a store write (between SQLAlchemy's statements, or inside
    an artifact upload) can leave the connection mid-transaction, and the run could then not
    be ended KILLED ("database is locked"). A stop waits for the write at hand: milliseconds
    for a metric, seconds for a model.
    """

    @functools.wraps(write)
    def deferred(*args, **kwargs):
        with signals_deferred():
            return write(*args, **kwargs)

    return deferred


class Tracker:
    """Logging calls into one MLflow run (``NullTracker`` stands in when tracking is off)."""

    def __init__(self, run_id: str, store: Store | None = None, resumed: bool = False):
        self.run_id = run_id
        self.store = store
        self.model_uri: str | None = None  # set by log_model
        self.resumed = resumed  # the run of an interrupted training, reopened
        self.kept_run_id: str | None = None  # the model is unchanged: the run file keeps it

    def __str__(self) -> str:
        return f"MLflow run {self.run_id} in {self.store.tracking_uri}"

    @uninterrupted
    def log_params(self, params: Params, sections: tuple[str, ...]) -> None:
        """Log the sections' params under dotted names.

        MLflow params cannot change. When a stage reruns on the same model with a different
        value (only ``evaluate`` changed, say), the first value stays and the tag
        ``rerun.<key>`` holds the one the latest rerun used.
        """
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

    @uninterrupted
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Tag the run with ``tags`` (values as strings)."""
        import mlflow

        mlflow.set_tags({key: str(value) for key, value in tags.items()})

    @uninterrupted
    def log_step(self, step: int, values: Mapping[str, float]) -> None:
        """Log the metrics of one evaluation during training at its ``step``."""
        import mlflow

        mlflow.log_metrics({name: float(value) for name, value in values.items()}, step=step)

    @uninterrupted
    def log_missing_steps(self, steps: list[tuple[int, Mapping[str, float]]]) -> None:
        """Log the ``(step, metrics)`` the run does not hold yet (resuming: the checkpoint is
        written before its row is logged, so the run may lack the last one, never more)."""
        if not steps:
            return
        import mlflow

        first_metric = next(iter(steps[0][1]))
        history = mlflow.MlflowClient().get_metric_history(self.run_id, first_metric)
        logged = {point.step for point in history}
        for step, values in steps:
            if step not in logged:
                self.log_step(step, values)

    @uninterrupted
    def log_metrics(self, values: Mapping[str, Any], prefix: str) -> None:
        """Log the top-level numbers of a metrics file, named ``prefix + key``."""
        import mlflow

        mlflow.log_metrics(top_level_metrics(values, prefix))

    @uninterrupted
    def log_data(
        self,
        files: Mapping[str, Path],
        dataset: str | None = None,
        splits: Mapping[str, Any] | None = None,
    ) -> None:
        """Record the data the run used: tags, and MLflow datasets for the runs page.

        Tags: the dataset's name and ``dataset.<split>_md5`` of each file. Each split also in
        ``splits`` (a ``digits.data.arrays.Split``) is logged with ``mlflow.log_input`` as dataset
        ``<dataset>-<split>`` (context: the split), its digest the file's MD5, so the runs
        page's Dataset column shows it.
        """
        import mlflow

        digests = {split: file_md5(path) for split, path in files.items()}
        tags = {f"dataset.{split}_md5": digest for split, digest in digests.items()}
        if dataset is not None:
            tags["dataset"] = dataset
        mlflow.set_tags(tags)
        if not splits:
            return
        import mlflow.data

        if dataset is None:
            dataset = mlflow.MlflowClient().get_run(self.run_id).data.tags.get("dataset", "data")
        for split, arrays in splits.items():
            with warnings.catch_warnings():
                # MLflow registers its local-file source once for "" and once for "file://"
                # and warns, on every file URI, that two sources (both that class) match.
                warnings.filterwarnings("ignore", message=AMBIGUOUS_LOCAL_SOURCE)
                logged = mlflow.data.from_numpy(
                    arrays.x,
                    targets=arrays.labels,
                    source=Path(files[split]).resolve().as_uri(),
                    name=f"{dataset}-{split}",
                    digest=digests[split],
                )
            mlflow.log_input(logged, context=split)

    @uninterrupted
    def log_files(self, *paths: str | os.PathLike[str], outputs: Outputs | None = None) -> None:
        """Log files or folders as artifacts, at their paths relative to the working folder.

        A path staged in ``outputs`` is logged from its temporary name, under its final one,
        so that the stage's outputs are swapped in only once MLflow holds them.

        Raises:
            PipelineError: The disk where the artifacts go is full.
        """
        import mlflow

        cwd = Path.cwd().resolve()
        for path in map(Path, paths):
            source = outputs.staged(path) if outputs else path
            absolute = path.resolve()
            # plots/confusion.png -> artifact "plots/confusion.png"; outside the repo: top level
            inside = absolute.is_relative_to(cwd) and absolute != cwd
            name = absolute.relative_to(cwd) if inside else Path(absolute.name)
            folder = None if name.parent == Path() else name.parent.as_posix()
            with self._artifact_errors(name):
                if source.is_dir():
                    mlflow.log_artifacts(str(source), artifact_path=name.as_posix())
                    continue
                # MLflow names a file artifact after the local file: link it under its name.
                with tempfile.TemporaryDirectory(
                    dir=source.parent, prefix=f".{absolute.name}.", suffix=".tmp"
                ) as linked:
                    local = Path(linked) / absolute.name
                    os.link(source, local)
                    mlflow.log_artifact(str(local), artifact_path=folder)

    @contextlib.contextmanager
    def _artifact_errors(self, name: str | os.PathLike[str]) -> Iterator[None]:
        """Turn a full disk where MLflow keeps artifacts into one line naming the place."""
        try:
            yield
        except OSError as error:
            if error.errno not in DISK_FULL:
                raise
            import mlflow

            where = f"MLflow's artifacts, {mlflow.get_artifact_uri()}"
            raise write_error(name, error, where) from None

    @uninterrupted
    def log_model(
        self, model, example, name: str = MODEL_ARTIFACT, registered_name: str = ""
    ) -> str | None:
        """Log a Keras model as a pyfunc of ours (``digits.serving.pyfunc``), with its summary.

        The logged model holds the ``.keras`` file as its data and names the installed module
        ``digits.serving.pyfunc`` as its loader: no pickle and no code travel with it. The file's
        SHA-256 becomes the run's tag ``KERAS_SHA256_TAG``, which predicting and serving check
        the file against (``digits.serving.logged_model``). Signature: (-1, 28, 28, 1) float32 ->
        (-1, 10) logits.

        Args:
            model: The trained ``keras.Model``.
            example: A batch of inputs, e.g. (1, 28, 28, 1) float32; the model's input example.
            name: The logged model's name, e.g. ``mnist-cnn`` (``model_name``).
            registered_name: Register the model under this name; "" does not register.

        Returns:
            The logged model's URI (``models:/m-...``), or None with tracking off.
        """
        import tempfile

        import mlflow

        from digits.serving import pyfunc
        from digits.serving.logged_model import KERAS_SHA256_TAG

        lines: list[str] = []
        model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
        with self._artifact_errors("keras_summary.txt"):
            mlflow.log_text("\n".join(lines) + "\n", "keras_summary.txt")
        with tempfile.TemporaryDirectory() as scratch, self._artifact_errors(name):
            keras_path = Path(scratch) / pyfunc.KERAS_FILE
            model.save(keras_path)
            mlflow.set_tag(KERAS_SHA256_TAG, pyfunc.sha256_of(keras_path))
            # MLflow's pyfunc logger says it validates the input example: a line per
            # training run that asks nothing of the user.
            with quiet_logger("mlflow.pyfunc"), quiet_logger("mlflow.models"):
                logged = mlflow.pyfunc.log_model(
                    name=name,
                    loader_module=pyfunc.__name__,
                    data_path=str(keras_path),
                    signature=pyfunc.model_signature(),
                    input_example=example,
                    pip_requirements=pinned_requirements(),
                    registered_model_name=registered_name or None,
                )
        self.model_uri = logged.model_uri
        return logged.model_uri


class NullTracker(Tracker):
    """The tracker of a stage with tracking off: the same calls, none of which logs anything."""

    run_id = store = model_uri = kept_run_id = None
    resumed = False

    def __init__(self) -> None:
        pass

    def __str__(self) -> str:
        return "MLflow tracking is off (tracking.enabled: false)"

    def _nothing(self, *args: Any, **kwargs: Any) -> None:
        return None

    log_params = set_tags = log_step = log_missing_steps = log_metrics = _nothing
    log_data = log_files = log_model = _nothing
