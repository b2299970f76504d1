"""Download stage: fetch the four IDX files of ``data.dataset``, verified, atomically.

Sources are tried in order: ``DATA_MIRROR`` (a folder, ``file://`` or ``http(s)://`` base
holding ``<dataset>/<file>.gz``) when set, then the dataset's public mirrors. How each file is
fetched and checked (bounded reads, deadline, retries, the error listing every location) is
``digits.data.fetch``.
"""

from __future__ import annotations

import os
from pathlib import Path

from digits.data.catalog import DEFAULT_CATALOG, load_dataset
from digits.data.fetch import FetchSettings, download_dataset
from digits.entry import run
from digits.params import load_params
from digits.runtime import cli


def main(argv: list[str] | None = None) -> None:
    """Read params and ``DATA_MIRROR``, then download the dataset into ``--out``."""
    parser = cli.stage_parser(__doc__)
    cli.add_catalog_option(parser, DEFAULT_CATALOG)
    parser.add_argument(
        "--out", type=Path, default=Path("data/raw"), help="folder for the four IDX files"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=FetchSettings.timeout,
        help="seconds to wait for each read from a mirror before trying again",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=FetchSettings.retries,
        help="retries of a network error or HTTP 5xx per location, with backoff",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=FetchSettings.deadline,
        help="seconds one file may take from a location before the next one is tried",
    )
    args = parser.parse_args(argv)
    params = load_params(args.params, sections=("data",))
    settings = FetchSettings(timeout=args.timeout, retries=args.retries, deadline=args.deadline)
    dataset = load_dataset(params.data.dataset, args.catalog)
    download_dataset(dataset, args.out, os.environ.get("DATA_MIRROR"), settings)


if __name__ == "__main__":
    run(main, tensorflow=False)
