"""Optuna TPE search whose trials are ordinary DVC experiments, run through the DVC queue.

    python -m search.tune --trials 20 --jobs 2 [--space search.yaml] [--storage URL]
    (make search TRIALS=20 JOBS=2)

Each trial Optuna asks for becomes ``dvc exp run --queue -n <study>-<trial number> -S ...``;
``dvc queue start -j N`` runs up to N of them at once, and the search reads each one's
validation metric from ``dvc exp show --json`` when DVC reports it finished, then tells Optuna.
So every trial is in ``dvc exp show``, has its MLflow run and can be applied.

The study lives in an Optuna RDB storage: ``optuna.db`` (SQLite) in the workspace by default,
or the URL in ``--storage`` / ``SEARCH_STORAGE`` (``postgresql+psycopg://...`` for a team's
PostgreSQL). Searches on several machines that share one storage and one study name add their
trials to the same study; trial numbers come from the database, so experiment names never
clash. ``--trials N`` is the study's total: a search asks for trials while fewer than N are
complete or running (on any machine), so two machines started with the same N share the work.
A search that is stopped leaves its trials in the study as running, tagged with its workspace;
started again, it collects those that DVC finished meanwhile and goes on.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from digits.errors import PipelineError, Terminated
from digits.runtime.stopping import run_stage
from search.experiments import FAILED, QUEUED, RUNNING, SUCCESS, run_dvc, show, start_queue
from search.space import DEFAULT_PATH, SearchSpace, load_space, suggest

STORAGE_ENV = "SEARCH_STORAGE"
DEFAULT_STORAGE = "optuna.db"  # in the workspace, git-ignored
EXPERIMENT_ATTR = "dvc.experiment"
WORKSPACE_ATTR = "workspace"


def storage_url(option: str | None, environ: dict[str, str], root: Path) -> str:
    """``--storage``, else ``SEARCH_STORAGE``, else SQLite in the workspace."""
    return option or environ.get(STORAGE_ENV) or f"sqlite:///{(root / DEFAULT_STORAGE).resolve()}"


def workspace_id(root: Path) -> str:
    """Which search owns a trial: this machine and this workspace."""
    return f"{socket.gethostname()}:{root.resolve()}"


def override(key: str, value: Any) -> str:
    """One ``-S`` argument, in the YAML DVC parses (``True`` -> ``true``)."""
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={value}"


def _create_or_load(optuna, space: SearchSpace, storage: str, attempts: int = 3):
    """``optuna.create_study(load_if_exists=True)``, asked again when a search on another
    machine created the storage's tables at the same moment.

    Two searches starting together on a new PostgreSQL database both create Optuna's schema;
    one fails on the other's ``CREATE TYPE`` (seen on 2026-12-03). Asked again, it finds the
    schema there and only loads it.
    """
    import sqlalchemy.exc

    for attempt in range(1, attempts + 1):
        try:
            return optuna.create_study(
                storage=storage,
                study_name=space.study,
                direction=space.direction,
                load_if_exists=True,
            )
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == attempts:
                raise
            time.sleep(attempt)
    raise AssertionError("unreachable")


def open_study(space: SearchSpace, storage: str, seed: int | None):
    """Create the study, or load it when another search (or an earlier run) made it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = _create_or_load(optuna, space, storage)
    except (ImportError, ModuleNotFoundError) as error:
        raise PipelineError(
            f"the storage {storage.split('://')[0]}:// needs a driver ({error}); "
            "install the search extra: pip install -e '.[search]'"
        ) from None
    if study.direction.name.lower() != space.direction:
        raise PipelineError(
            f"study {space.study!r} in the storage is set to {study.direction.name.lower()}, "
            f"but the search space says {space.direction}; use another study name"
        )
    # A seeded search that resumes must not draw its first guesses again: offset the seed by
    # the trials the study already has. constant_liar: trials still running count as bad
    # guesses, so trials running side by side spread out.
    offset = None if seed is None else seed + len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=offset, constant_liar=True)
    return study


class Search:
    """Keeps up to ``jobs`` trials in the DVC queue until the study has ``trials`` of them."""

    def __init__(
        self,
        study: Any,
        space: SearchSpace,
        root: Path,
        jobs: int,
        total: int,
        log: Callable[[str], None] = print,
    ):
        self.study = study
        self.space = space
        self.root = root
        self.jobs = jobs
        self.total = total
        self.log = log
        self.owner = workspace_id(root)
        self.in_flight: dict[str, int] = {}  # experiment name -> trial number
        self.failures = 0

    def counted(self) -> int:
        """Trials that count towards the total: complete, or running on some machine."""
        import optuna

        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
        return len(self.study.get_trials(deepcopy=False, states=states))

    def adopt(self) -> None:
        """Take back this workspace's trials that an earlier, stopped search left running."""
        import optuna

        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for trial in running:
            if trial.user_attrs.get(WORKSPACE_ATTR) != self.owner:
                continue
            name = trial.user_attrs.get(EXPERIMENT_ATTR)
            if name is None:  # stopped between asking and queueing: nothing ran
                self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
                continue
            self.in_flight[name] = trial.number
        if self.in_flight:
            self.log(f"resuming: {len(self.in_flight)} trial(s) of an earlier search in flight")

    def queue_trials(self) -> bool:
        """Ask Optuna for trials and queue them until ``jobs`` are in flight or none are due."""
        queued = False
        while len(self.in_flight) < self.jobs and self.counted() < self.total:
            trial = self.study.ask()
            values = suggest(self.space, trial)
            name = f"{self.space.study}-{trial.number}"
            trial.set_user_attr(WORKSPACE_ATTR, self.owner)
            trial.set_user_attr(EXPERIMENT_ATTR, name)
            arguments = [
                item for key, value in values.items() for item in ("-S", override(key, value))
            ]
            run_dvc(["exp", "run", "--queue", "-n", name, *arguments], self.root)
            self.in_flight[name] = trial.number
            shown = ", ".join(
                f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                for key, value in values.items()
            )
            self.log(f"trial {trial.number}: queued {name}  {shown}")
            queued = True
        return queued

    def collect(self) -> None:
        """Tell Optuna the result of every in-flight trial that DVC reports finished."""
        import optuna

        _, experiments = show(self.root)
        states = {experiment.name: experiment for experiment in experiments}
        for name, number in list(self.in_flight.items()):
            experiment = states.get(name)
            if experiment is not None and experiment.state in (QUEUED, RUNNING):
                continue
            del self.in_flight[name]
            value = experiment.metrics.get(self.space.metric) if experiment else None
            if experiment is not None and experiment.state == SUCCESS and value is not None:
                self.study.tell(number, float(value))
                self.log(f"trial {number}: {name} {self.space.metric} = {value:.4f}")
                continue
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
            self.failures += 1
            why = {FAILED: "failed", SUCCESS: f"wrote no {self.space.metric}"}.get(
                experiment.state if experiment else "", "is not in `dvc exp show` any more"
            )
            self.log(f"trial {number}: {name} {why} (`dvc queue logs {name}`); marked failed")

    def run(self, max_failures: int, poll_seconds: float) -> None:
        """Search until the study holds ``total`` complete or running trials and none of ours
        is in flight."""
        self.adopt()
        while True:
            if self.queue_trials():
                start_queue(self.jobs, self.root)
            if not self.in_flight:
                return
            time.sleep(poll_seconds)
            self.collect()
            if self.failures >= max_failures:
                raise PipelineError(
                    f"{self.failures} trials failed; see `dvc queue logs <name>` and fix the "
                    "cause before searching again"
                )


def summary(study: Any, metric: str) -> str:
    """The best trial so far, or why there is none."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return f"study {study.study_name!r}: no complete trial yet"
    best = study.best_trial
    params = ", ".join(f"{key}={value}" for key, value in best.params.items())
    return (
        f"study {study.study_name!r}: {len(complete)} complete trial(s); best: trial "
        f"{best.number} ({best.user_attrs.get(EXPERIMENT_ATTR)}) {metric} = {best.value:.4f}  "
        f"{params}"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the search in the repository in the current directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="the study's total trials")
    parser.add_argument("--jobs", type=int, default=1, help="trials running at once")
    parser.add_argument("--space", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument(
        "--storage",
        help=f"Optuna storage URL (default: ${STORAGE_ENV}, "
        f"else sqlite:///<workspace>/{DEFAULT_STORAGE})",
    )
    parser.add_argument("--seed", type=int, help="seed of the TPE sampler (default: random)")
    parser.add_argument("--max-failures", type=int, default=3)
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.trials < 1 or args.jobs < 1:
        raise PipelineError(
            f"--trials and --jobs must be at least 1, got {args.trials}, {args.jobs}"
        )
    root = Path.cwd()
    space = load_space(args.space, args.params)
    storage = storage_url(args.storage, dict(os.environ), root)
    study = open_study(space, storage, args.seed)
    search = Search(study, space, root, args.jobs, args.trials)
    try:
        search.run(args.max_failures, args.poll_seconds)
    except (KeyboardInterrupt, Terminated) as stop:
        print(
            f"interrupted: {len(search.in_flight)} trial(s) stay in the DVC queue and in the "
            "study; run the search again to collect them and go on (`dvc queue kill` stops them)"
        )
        raise SystemExit(130 if isinstance(stop, KeyboardInterrupt) else 143) from None
    print(summary(study, space.metric))


if __name__ == "__main__":
    raise SystemExit(run_stage(main))
