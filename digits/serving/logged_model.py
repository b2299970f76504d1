"""A logged model from the MLflow store, as a checked ``.keras`` file: nothing else of it is used.

Whoever can write the artifact store can replace any file of a logged model, so predicting
and serving trust only what the tracking store recorded at training time:

- the URI: ``models:/m-<id>``, ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or
  ``runs:/<run id>/<name>`` (a URI that names a place, ``file:``, ``s3:``, ..., has no run to
  check against and is refused);
- the model's files: its ``MLmodel`` (read as YAML data) must name this package's loader,
  ``digits.serving.pyfunc`` (or its former name ``digits.pyfunc``), no bundled code, and
  ``data/model.keras``; the model holds no other file than MLflow's descriptions and that one
  (a pickle or a ``code/`` folder is refused);
- the ``.keras`` file: its SHA-256 must be the run's tag ``KERAS_SHA256_TAG``, set by
  ``digits.tracking.logger.Tracker.log_model`` when the model was logged.

Only the ``.keras`` file is then loaded, by ``digits.serving.pyfunc`` in Keras safe mode. MLflow is
imported inside the functions that talk to the store.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from digits.errors import PipelineError
from digits.serving.pyfunc import KERAS_FILE, ModelFileError, check_keras_file

KERAS_SHA256_TAG = "digits.keras_sha256"  # run tag: SHA-256 of the logged .keras file
LOADER_MODULE = "digits.serving.pyfunc"
# The same loader under the name models logged before the library's sub-packages carry:
# their MLmodel keeps it, and only the checked .keras file is used either way.
FORMER_LOADER_MODULES = frozenset({"digits.pyfunc"})
KERAS_DATA = f"data/{KERAS_FILE}"  # where a logged model keeps its .keras file
# What MLflow writes beside the data of a model logged with a loader module.
DESCRIPTION_FILES = frozenset(
    {"MLmodel", "conda.yaml", "python_env.yaml", "requirements.txt", "input_example.json",
     "serving_input_example.json", "registered_model_meta"}
)  # fmt: skip

_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_RUN_ID = r"[0-9a-f]{32}"  # MLflow names runs by uuid4().hex
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,255}"  # a logged or registered model's name
_MODEL_ID = re.compile(r"models:/(m-[0-9a-f]{32})")
_VERSION = re.compile(rf"models:/({_NAME})/([0-9]{{1,9}})")
_ALIAS = re.compile(rf"models:/({_NAME})@([A-Za-z0-9_-]{{1,255}})")
_RUN_MODEL = re.compile(rf"runs:/({_RUN_ID})/({_NAME})")
_MODEL_FOLDER = re.compile(r"/models/(m-[0-9a-f]{32})/artifacts$")


@dataclass(frozen=True)
class CheckedModel:
    """A logged model's ``.keras`` file, checked against its run."""

    uri: str
    run_id: str
    keras_path: Path  # the downloaded .keras file, its digest the run's
    sha256: str
    dataset: str | None  # the run's ``dataset`` tag


def is_model_uri(model: str) -> bool:
    """Whether ``model`` is an MLflow URI of a form predicting and serving accept."""
    return any(form.fullmatch(model) for form in (_MODEL_ID, _VERSION, _ALIAS, _RUN_MODEL))


def check_run_model_uri(uri: object, run_id: object, source: str | os.PathLike[str]) -> str:
    """The ``model_uri`` of a run file, if it names a model of that file's run.

    Accepted: ``runs:/<run_id>/<name>`` of that run, or ``models:/m-<id>`` (whose run is
    checked against ``run_id`` when the model is fetched).

    Raises:
        PipelineError: Anything else (a path, another run's model, another scheme).
    """
    if isinstance(uri, str) and isinstance(run_id, str) and re.fullmatch(_RUN_ID, run_id):
        run_model = _RUN_MODEL.fullmatch(uri)
        if _MODEL_ID.fullmatch(uri) or (run_model and run_model.group(1) == run_id):
            return uri
    raise PipelineError(
        f"{source}: model_uri {uri!r} is not a model of run {run_id!r} (expected models:/m-<id> "
        f"or runs:/<run id>/<name>); the file was edited or damaged: restore it "
        f"(`dvc checkout {source}`) or retrain with `dvc repro --force train`"
    )


def fetch_checked(
    uri: str, folder: str | os.PathLike[str], run_id: str | None = None
) -> CheckedModel:
    """Download the ``.keras`` file of the logged model ``uri`` into ``folder`` and check it.

    MLflow resolves ``uri`` against its current tracking URI. ``run_id``: the run the model
    must come from (a run file's), or None for any run.

    Returns:
        A ``CheckedModel``.

    Raises:
        PipelineError: One line naming the model: a URI of another form, a model not in the
            store, one not of ``run_id``, files other than a model logged by this package
            holds, or a ``.keras`` file whose SHA-256 is not its run's.
    """
    from mlflow.exceptions import MlflowException

    try:
        with _no_progress_bars():
            checked = _fetch(uri, folder, run_id)
    except ModelFileError as error:
        raise PipelineError(f"model {uri}: {error}") from None
    except MlflowException as error:
        raise PipelineError(
            f"model {uri}: {error.message.splitlines()[0]}; check the URI and "
            "MLFLOW_TRACKING_URI (`mlflow models` / the UI list what exists)"
        ) from None
    except OSError as error:
        raise PipelineError(f"model {uri}: cannot download it ({error})") from None
    return checked


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """No "Downloading artifacts" bars during the block: a model is a few small files."""
    previous = os.environ.get(_PROGRESS_BAR)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[_PROGRESS_BAR]
        else:
            os.environ[_PROGRESS_BAR] = previous


def _fetch(uri: str, folder: str | os.PathLike[str], run_id: str | None) -> CheckedModel:
    """``fetch_checked`` without its error messages."""
    import mlflow

    logged, named_run = _logged_model(uri)
    if run_id is not None and logged.source_run_id != run_id:
        raise ModelFileError(f"it was logged by run {logged.source_run_id}, not {run_id}")
    tags = mlflow.MlflowClient().get_run(logged.source_run_id).data.tags
    sha256 = tags.get(KERAS_SHA256_TAG)
    if not sha256:
        raise ModelFileError(
            f"its run records no SHA-256 of its .keras file (tag {KERAS_SHA256_TAG}): it "
            "was logged by an older version of this project; retrain to log it again"
        )
    location = logged.artifact_location.rstrip("/")
    _check_files(location, folder)
    keras_path = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{location}/{KERAS_DATA}", dst_path=str(folder)
    )
    check_keras_file(keras_path, sha256)
    # The dataset: a registered version's run says it, else the model's own run.
    if named_run != logged.source_run_id:
        dataset = mlflow.MlflowClient().get_run(named_run).data.tags.get("dataset")
    else:
        dataset = None
    dataset = dataset or tags.get("dataset") or None
    return CheckedModel(uri, logged.source_run_id, Path(keras_path), sha256, dataset)


def _logged_model(uri: str):
    """The ``LoggedModel`` a URI names, looked up in the tracking store (never its files),
    and the run the URI names it through (a registered version's run, else the model's).

    Raises:
        ModelFileError: Not a URI of an accepted form, or a registered version without a
            logged model.
    """
    import mlflow

    client = mlflow.MlflowClient()
    if match := _MODEL_ID.fullmatch(uri):
        logged = client.get_logged_model(match.group(1))
        return logged, logged.source_run_id
    if match := _RUN_MODEL.fullmatch(uri):
        run_id, name = match.groups()
        experiment = client.get_run(run_id).info.experiment_id
        found = client.search_logged_models(
            experiment_ids=[experiment],
            filter_string=f"source_run_id = '{run_id}' AND name = '{name}'",
        )
        if not found:
            raise ModelFileError(f"run {run_id} logged no model named {name}")
        return found[0], run_id
    if match := _ALIAS.fullmatch(uri):
        version = client.get_model_version_by_alias(*match.groups())
    elif match := _VERSION.fullmatch(uri):
        version = client.get_model_version(*match.groups())
    else:
        raise ModelFileError(
            "not a URI predicting and serving accept: use models:/<name>@<alias>, "
            "models:/<name>/<version>, models:/m-<id> or runs:/<run id>/<name> (a .keras "
            "file for digits-predict)"
        )
    if version.model_id:
        logged = client.get_logged_model(version.model_id)
        return logged, version.run_id or logged.source_run_id
    # A version registered from a location (create_model_version(source=...)): the logged
    # model whose folder that is (MLflow keeps it at .../models/m-<id>/artifacts).
    source = (version.source or "").rstrip("/")
    if match := _MODEL_FOLDER.search(source) or _MODEL_ID.fullmatch(source):
        logged = client.get_logged_model(match.group(1))
        if source.startswith("models:/") or logged.artifact_location.rstrip("/") == source:
            return logged, version.run_id or logged.source_run_id
    raise ModelFileError(
        f"version {version.version} of {version.name} names no logged model "
        f"(source {version.source}): register a model logged by the train stage"
    )


def _check_files(location: str, folder: str | os.PathLike[str]) -> None:
    """Refuse a logged model whose files are not what ``Tracker.log_model`` writes.

    Raises:
        ModelFileError: A file other than MLflow's descriptions and ``data/model.keras``, or
            an ``MLmodel`` that names another loader, bundled code or other data.
    """
    import mlflow
    import yaml

    # MLflow lists paths from the folder above the one listed: keep the last part.
    names = {PurePosixPath(entry.path).name for entry in mlflow.artifacts.list_artifacts(location)}
    data = {
        f"data/{PurePosixPath(entry.path).name}"
        for entry in mlflow.artifacts.list_artifacts(f"{location}/data")
    }
    unexpected = sorted((names - DESCRIPTION_FILES - {"data"}) | (data - {KERAS_DATA}))
    if unexpected:
        raise ModelFileError(
            f"it holds files a model of this project does not ({', '.join(unexpected)}): "
            "it was altered, or logged by something else; it is not loaded"
        )
    description = mlflow.artifacts.download_artifacts(f"{location}/MLmodel", dst_path=str(folder))
    try:
        flavors = yaml.safe_load(Path(description).read_text()).get("flavors") or {}
        flavor = flavors["python_function"]
    except (yaml.YAMLError, AttributeError, KeyError, TypeError):
        raise ModelFileError("its MLmodel file is damaged or has no python_function") from None
    expected = {"loader_module": LOADER_MODULE, "data": KERAS_DATA, "code": None}
    found = {key: flavor.get(key) for key in expected}
    if found["loader_module"] in FORMER_LOADER_MODULES:
        found = {**found, "loader_module": LOADER_MODULE}
    if set(flavors) != {"python_function"} or found != expected:
        raise ModelFileError(
            f"its MLmodel does not describe a model of this project (flavors {sorted(flavors)}, "
            f"{found}): it was altered, or logged by something else; it is not loaded"
        )
