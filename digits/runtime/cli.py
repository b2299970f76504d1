"""Command-line options the stages share, each defined once, with its help text.

Imports nothing heavy (no TensorFlow, Keras, MLflow, scikit-learn, matplotlib or pandas), so
``--help`` and argument errors answer at once; stages import those after parsing (STYLE.md
rule 11). The defaults are the paths ``dvc.yaml`` passes, for running a stage by hand from
the repository root.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from digits.params import DEFAULT_PATH

MODEL = Path("models/model.keras")
RUN_FILE = Path("models/mlflow_run.json")  # the id of the model's MLflow run
TEST_SPLIT = Path("data/processed/test.npz")


def stage_parser(docstring: str | None) -> argparse.ArgumentParser:
    """A parser described by the first line of a stage's docstring, with ``--params``.

    Help lines show each option's default.
    """
    parser = argparse.ArgumentParser(
        description=(docstring or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=DEFAULT_PATH,
        help="params file; the stage reads its own section (see params.yaml)",
    )
    return parser


def add_run_option(parser: argparse.ArgumentParser, *, written: bool) -> None:
    """``--run``: the JSON file with the id of the model's MLflow run."""
    action = "written with" if written else "read from"
    parser.add_argument(
        "--run",
        type=Path,
        default=RUN_FILE,
        help=f"the model's MLflow run id, {action} this JSON file",
    )


def add_model_and_test_options(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--run``, ``--test``: what evaluate and visualize read."""
    parser.add_argument(
        "--model", type=Path, default=MODEL, help="the trained Keras model to look at"
    )
    add_run_option(parser, written=False)
    parser.add_argument(
        "--test",
        type=Path,
        default=TEST_SPLIT,
        help="the test split written by preprocess (.npz)",
    )


def add_catalog_option(parser: argparse.ArgumentParser, default: Path) -> None:
    """``--catalog``: the datasets file (``digits.data.catalog.DEFAULT_CATALOG``)."""
    parser.add_argument(
        "--catalog",
        type=Path,
        default=default,
        help="datasets file: files, SHA-256 sums, mirrors and class names of each dataset",
    )
