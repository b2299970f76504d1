"""Promote a registered model version to an alias (``champion``) unless it is worse.

    python -m digits.tracking.promote                # latest version of tracking.register_model
    python -m digits.tracking.promote --name digits-cnn --version 4 --alias champion
    make promote VERSION=4                           # the same; FORCE=1 adds --force

The version is compared with the alias's current holder on the same test metric of their
runs (``test/accuracy`` by default, which ``evaluate`` logs; higher is better, lower for a
loss) and both figures are printed. A run whose model was byte-identical to the one in place
(tagged ``digits.same_model_as``: a retrain that changed nothing, whose later stages did not
rerun) takes the figure of the run it names, which holds that model's evaluation. A worse
version is refused unless ``--force``. The model is then ``models:/<name>@<alias>`` for
``digits-predict --model`` and ``make serve MODEL=``. MLflow's model aliases, not its
deprecated stages.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from digits.errors import PipelineError
from digits.runtime.stopping import run_stage
from digits.tracking.stage_run import SAME_MODEL_TAG


@dataclass(frozen=True)
class Standing:
    """One model version and its figure on the compared metric."""

    version: str
    value: float | None  # None: its run has no such metric
    source_run: str | None = None  # the run the figure comes from, when not the version's own


def lower_is_better(metric: str) -> bool:
    """Losses are better lower; accuracy, F1 and the rest higher."""
    return "loss" in metric.rsplit("/", 1)[-1]


def is_worse(candidate: float, holder: float, metric: str) -> bool:
    """Whether ``candidate`` is strictly worse than ``holder`` on ``metric``."""
    return candidate > holder if lower_is_better(metric) else candidate < holder


def standing(client, name: str, version: str, metric: str) -> Standing:
    """Version ``version`` of ``name`` and its run's ``metric``.

    A run without ``metric`` but tagged ``SAME_MODEL_TAG`` trained the very bytes of the
    model of the run it names: the figure is that run's (followed along a chain of such tags).
    """
    found = client.get_model_version(name, version)
    run_id, seen = found.run_id, set()
    while run_id and run_id not in seen:
        seen.add(run_id)
        run = client.get_run(run_id)
        value = run.data.metrics.get(metric)
        if value is not None:
            source = None if run_id == found.run_id else run_id
            return Standing(str(found.version), value, source)
        run_id = run.data.tags.get(SAME_MODEL_TAG)
    return Standing(str(found.version), None)


def promote(
    client,
    name: str,
    version: str | None,
    alias: str,
    metric: str,
    force: bool,
    say: Callable[[str], None] = print,
) -> str:
    """Point ``alias`` at the version unless it is worse than the holder.

    Both figures go to ``say`` before any refusal. Returns the version that holds ``alias``.

    Raises:
        PipelineError: No such model or version; the version has no ``metric``; or it is
            worse than the holder (or the holder has no figure) without ``force``.
    """
    from mlflow.exceptions import MlflowException

    try:
        if version is None:
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise PipelineError(f"model {name!r} has no versions: train with it registered")
            version = str(max(int(v.version) for v in versions))
        candidate = standing(client, name, version, metric)
        try:
            held = client.get_model_version_by_alias(name, alias)
        except MlflowException as error:
            if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            held = None
        holder = standing(client, name, held.version, metric) if held else None
    except MlflowException as error:
        raise PipelineError(
            f"{name} version {version}: {error.message.splitlines()[0]} "
            "(`mlflow models` / the UI's Models page list what is registered)"
        ) from None

    def figure(value: float | None) -> str:
        return "no figure" if value is None else f"{value:.4f}"

    say(f"{name} version {candidate.version}: {metric} {figure(candidate.value)}")
    if candidate.source_run:
        say(f"  (from run {candidate.source_run}, which evaluated the same model bytes)")
    if holder is None:
        say(f"@{alias}: nobody yet")
    else:
        say(f"@{alias} (version {holder.version}): {metric} {figure(holder.value)}")
    if candidate.value is None and not force:
        raise PipelineError(
            f"{name} version {candidate.version} has no {metric}: run `dvc repro` (evaluate) "
            "for its run first, or use --force"
        )
    if holder is not None and holder.version == candidate.version:
        say(f"unchanged: version {candidate.version} already holds @{alias}")
        return candidate.version
    if holder is not None and not force:
        if holder.value is None:
            raise PipelineError(
                f"@{alias} version {holder.version} has no {metric} to compare with; "
                "use --force to promote anyway"
            )
        if is_worse(candidate.value, holder.value, metric):
            raise PipelineError(
                f"{name} version {candidate.version} is worse than @{alias} version "
                f"{holder.version} on {metric} ({candidate.value:.4f} vs {holder.value:.4f}); "
                "use --force to promote it anyway"
            )
    client.set_registered_model_alias(name, alias, candidate.version)
    forced = " (forced)" if force and holder is not None else ""
    say(f"promoted{forced}: models:/{name}@{alias} -> version {candidate.version}")
    return candidate.version


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, compare and promote, print both figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--name", default="", help="registered model (default: tracking.register_model)"
    )
    parser.add_argument("--version", default=None, help="version to promote (default: latest)")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--metric", default="test/accuracy", help="run metric to compare on")
    parser.add_argument("--force", action="store_true", help="promote even if worse")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    name = args.name
    if not name:
        from digits.params import load_params

        name = load_params(args.params, sections=("tracking",)).tracking.register_model
        if not name:
            raise PipelineError(
                "which model? pass --name (NAME=), or set tracking.register_model in params.yaml"
            )
    import mlflow

    from digits.tracking.mlflow_store import resolve_store

    client = mlflow.MlflowClient(resolve_store(os.environ, Path.cwd()).tracking_uri)
    promote(client, name, args.version, args.alias, args.metric, args.force)


if __name__ == "__main__":
    sys.exit(run_stage(main))
