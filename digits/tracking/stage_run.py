"""MLflow tracking: one run per trained model, reopened by every stage that uses the model.

``train`` opens the run, logs params, per-step metrics, the model and its files, and writes
the run id to ``models/mlflow_run.json``, a DVC output beside the model. ``evaluate`` and
``visualize`` read that file and log into the same run, so what they make from a model always
lands in the run of that model, even when only they rerun. Where runs go, and how the store is
opened safely, is ``digits.tracking.mlflow_store`` (checked by ``digits.tracking.store_checks``,
opened by ``digits.tracking.store_access``); the logging calls into a run are
``digits.tracking.logger``; what they record is computed in ``digits.tracking.run_values``.

MLflow is imported only when tracking is enabled, so ``tracking.enabled: false`` runs the
pipeline without loading it. Stages call this module from their ``main()`` only.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from digits.errors import DataError, PipelineError, Terminated
from digits.params import TrackingParams
from digits.runtime.atomic import Outputs
from digits.tracking.logger import NullTracker, Tracker, uninterrupted
from digits.tracking.mlflow_store import Store, StoreError, resolve_store
from digits.tracking.run_values import git_commit, run_tags
from digits.tracking.store_access import find_run, open_store
from digits.tracking.store_checks import UNCHANGED, store_errors

# What MLflow names a run by: uuid4().hex.
_RUN_ID = re.compile(r"[0-9a-f]{32}")
# On a training run whose model is byte-identical to the one in place: that model's run.
SAME_MODEL_TAG = "digits.same_model_as"


def read_run_file(path: str | os.PathLike[str]) -> str | None:
    """The run id that ``train`` recorded, or None when it ran with tracking off.

    Raises:
        DataError: The file is missing or damaged.
    """
    return read_run_record(path)["run_id"]


def read_run_record(path: str | os.PathLike[str]) -> dict:
    """What ``train`` recorded: ``run_id`` (checked: an MLflow run id, or None), and with
    tracking on ``experiment`` and ``model_uri``.

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
    if run_id is not None and not (isinstance(run_id, str) and _RUN_ID.fullmatch(run_id)):
        # Checked here, before MLflow sees it: the id becomes part of paths and queries.
        raise DataError(
            f"{path}: run_id {run_id!r} is not an MLflow run id (32 hex digits, or null); "
            f"the file was edited or damaged: restore it (`dvc checkout {path}`) or retrain "
            "with `dvc repro --force train`"
        )
    return record


@contextlib.contextmanager
def new_run(
    tracking: TrackingParams,
    run_file: str | os.PathLike[str],
    outputs: Outputs,
    resume_run_id: str | None = None,
    model: str | os.PathLike[str] | None = None,
) -> Iterator[Tracker]:
    """Open the run of a model being trained; stage its id for ``run_file`` on success.

    The run file is one of ``outputs``, so it is swapped in with the model it names; the
    block is the transaction of ``outputs`` (do not enter them yourself), and the run ends
    after their swap. The run is named after the DVC experiment when there is one and tagged
    with the git commit. It ends FINISHED when the outputs are in place, KILLED on Ctrl-C,
    SIGTERM or SIGHUP before that, FAILED on any other exception (a swap that failed too).
    With tracking off, ``run_file`` records ``null``.

    ``resume_run_id`` is the run of an interrupted training (from its checkpoint): that run
    is reopened when the store holds it in the same experiment (``Tracker.resumed``), so the
    resumed training logs into one run; otherwise a new run starts.

    ``model``: the model output. When the one staged is byte-identical to the one in place
    (a retrain that changed nothing), ``run_file`` keeps naming the run of the model in place,
    which holds its evaluation, so no later stage reruns; the new run is tagged
    ``SAME_MODEL_TAG`` with that run's id (``Tracker.kept_run_id``).
    """
    if not tracking.enabled:
        with outputs:
            yield NullTracker()
            outputs.write_json(run_file, {"run_id": None})
        return
    import mlflow

    store = resolve_store(os.environ, Path.cwd())
    experiment_id = open_store(store, tracking.experiment)
    with store_errors(store, UNCHANGED):
        if resume_run_id is not None and _in_experiment(store, resume_run_id, experiment_id):
            run = uninterrupted(mlflow.start_run)(
                run_id=resume_run_id, log_system_metrics=system_metrics(os.environ)
            )
        else:
            run = uninterrupted(mlflow.start_run)(
                log_system_metrics=system_metrics(os.environ),
                experiment_id=experiment_id,
                run_name=os.environ.get("DVC_EXP_NAME") or None,
                tags=run_tags(os.environ, git_commit(os.environ, Path.cwd())),
            )
    with _ending(run.info.run_id, store, outputs), outputs:
        tracker = Tracker(run.info.run_id, store, resumed=run.info.run_id == resume_run_id)
        yield tracker
        record = {
            "run_id": run.info.run_id,
            "experiment": tracking.experiment,
            "model_uri": tracker.model_uri,
        }
        kept = _same_model_record(run_file, model, outputs, store, experiment_id)
        if kept is not None and kept["run_id"] != run.info.run_id:
            uninterrupted(mlflow.set_tag)(SAME_MODEL_TAG, kept["run_id"])
            tracker.kept_run_id = kept["run_id"]
            record = kept
        outputs.write_json(run_file, record)


def _same_model_record(
    run_file: str | os.PathLike[str],
    model: str | os.PathLike[str] | None,
    outputs: Outputs,
    store: Store,
    experiment_id: str,
) -> dict | None:
    """The record in ``run_file`` when the staged ``model`` has the bytes of the one in place
    and the record's run is in ``experiment_id`` of ``store``; else None."""
    if model is None or not Path(model).is_file():
        return None
    try:
        record = read_run_record(run_file)
    except (DataError, OSError):
        return None
    run_id = record["run_id"]
    if run_id is None or not filecmp.cmp(outputs.staged(model), model, shallow=False):
        return None
    return record if _in_experiment(store, run_id, experiment_id) else None


@contextlib.contextmanager
def model_run(
    tracking: TrackingParams, run_file: str | os.PathLike[str], outputs: Outputs | None = None
) -> Iterator[Tracker]:
    """Reopen the run that ``train`` recorded in ``run_file``, for a stage that uses the model.

    The block is the transaction of ``outputs`` (none: a stage that writes nothing); the run
    ends after their swap, as ``new_run`` describes: FINISHED, KILLED or FAILED.

    Raises:
        PipelineError: Tracking is on but the model was trained with it off, or the run is
            not in the store (another machine's run file, or a different store).
    """
    if outputs is None:
        outputs = Outputs()
    if not tracking.enabled:
        with outputs:
            yield NullTracker()
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
    with store_errors(store, UNCHANGED):
        uninterrupted(mlflow.start_run)(run_id=run_id)
    with _ending(run_id, store, outputs), outputs:
        yield Tracker(run_id, store)


def system_metrics(environ: Mapping[str, str]) -> bool | None:
    """Whether a training run records CPU and memory use over time (MLflow's system metrics,
    sampled every 10 s by a thread of MLflow's): on, unless the user set MLflow's own
    ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` (None: MLflow reads it)."""
    return None if "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING" in environ else True


def _in_experiment(store: Store, run_id: str, experiment_id: str) -> bool:
    """Whether the store holds ``run_id``, not deleted, in experiment ``experiment_id``."""
    import mlflow

    try:
        find_run(store, run_id, "the checkpoint")
    except PipelineError:
        return False
    return mlflow.MlflowClient().get_run(run_id).info.experiment_id == experiment_id


@contextlib.contextmanager
def _ending(run_id: str, store: Store, outputs: Outputs) -> Iterator[None]:
    """End the active run as the block ends: FINISHED once ``outputs`` are swapped in (a stop
    that waited for the swap included), KILLED on Ctrl-C or SIGTERM before, else FAILED.

    A store that failed or stopped answering inside the block ends the stage with one
    ``StoreError`` line, and the run is not ended: that call would fail (or wait) again.
    """
    import mlflow

    try:
        with store_errors(store):
            yield
        # A stop that arrives while the run is being ended waits for it; one that arrives
        # between the swap and here is caught below, and ends the run FINISHED all the same.
        with store_errors(store, "its outputs are written, but the run is left RUNNING"):
            uninterrupted(mlflow.end_run)("FINISHED")
    except StoreError:
        raise
    except (KeyboardInterrupt, Terminated):
        # No-op when the run has already ended (the stop came after the end above).
        uninterrupted(mlflow.end_run)("FINISHED" if outputs.swapped else "KILLED")
        raise
    except BaseException:
        uninterrupted(mlflow.end_run)("FAILED")
        raise
