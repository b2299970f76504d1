"""Fetching a dataset's files: verified, atomically, from an ordered list of locations.

A file counts only when its SHA-256 matches (compressed or decompressed); otherwise the next
location is tried. Each file is checked as it arrives, in bounded memory and disk
(``digits.data.gzip_check``): a location that sends more than the file can be, or has not finished
by the deadline, is left for the next one. Every failure is kept so the final error lists
each location and why. The download stage (``stages/download.py``) drives it.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from digits.data.catalog import Dataset, RemoteFile
from digits.data.gzip_check import GzipCheck, TooLarge, gz_limit
from digits.errors import PipelineError
from digits.runtime.atomic import atomic_path

CHUNK_BYTES = 1 << 16


class FetchError(Exception):
    """One location failed for one file; the next location may still work."""


class DownloadError(PipelineError):
    """Every location failed for a file."""


@dataclass(frozen=True)
class FetchSettings:
    """Network behaviour: per-read timeout (s), retries of transient failures, backoff (s),
    and the deadline (s) of one attempt at one file, however the bytes trickle in."""

    timeout: float = 30.0
    retries: int = 3
    backoff: float = 1.0
    deadline: float = 300.0


def source_bases(dataset: Dataset, data_mirror: str | None) -> list[str]:
    """Ordered base URLs (ending in ``/``) to fetch the dataset's files from."""
    bases = []
    if data_mirror:
        parsed = urllib.parse.urlparse(data_mirror)
        if parsed.scheme in ("http", "https", "file"):
            base = data_mirror
        else:
            base = Path(data_mirror).expanduser().resolve().as_uri()
        bases.append(f"{base.rstrip('/')}/{dataset.name}/")
    bases.extend(dataset.mirrors)
    return bases


def verify(path: Path, remote: RemoteFile) -> str | None:
    """Return why ``path`` is not a good copy of ``remote``, or ``None`` when it is."""
    check = GzipCheck(remote)
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                check.update(chunk)
    except TooLarge as error:
        return str(error)
    return check.problem()


class _NoDowngradeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to plain http."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if req.full_url.startswith("https:") and not newurl.startswith("https:"):
            raise FetchError(f"refused redirect from https to {newurl}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoDowngradeRedirects)


def copy_url(url: str, target: Path, remote: RemoteFile, settings: FetchSettings) -> str | None:
    """Copy ``url`` into ``target``, checking it as it arrives; retry network errors and HTTP
    5xx with backoff.

    Returns:
        Why the copy is not a good ``remote``, or None when it is.

    Raises:
        FetchError: The location failed, sent more than the file can be, or took longer than
            ``settings.deadline``; the next location may still work.
    """
    if url.startswith("file:"):
        source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        if not source.is_file():
            raise FetchError("no such file")
        with source.open("rb") as stream:
            return _copy(stream, target, remote, None, settings.deadline)
    for attempt in range(settings.retries + 1):
        try:
            return _stream(url, target, remote, settings)
        except urllib.error.HTTPError as error:
            if error.code < 500 or attempt == settings.retries:
                raise FetchError(f"HTTP {error.code} {error.reason}") from None
            reason = f"HTTP {error.code}"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = str(getattr(error, "reason", error)) or type(error).__name__
            if attempt == settings.retries:
                raise FetchError(f"{reason} (after {attempt + 1} attempts)") from None
        delay = settings.backoff * 2**attempt
        print(f"  {url}: {reason}; retrying in {delay:g}s", file=sys.stderr)
        time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _stream(url: str, target: Path, remote: RemoteFile, settings: FetchSettings) -> str | None:
    started = time.monotonic()
    with _OPENER.open(url, timeout=settings.timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        limit = gz_limit(remote.payload_bytes)
        if total and total > limit:
            raise FetchError(
                f"announces {total:,} bytes, more than any gzip of {remote.name} ({limit:,})"
            )
        # tqdm hides itself when stderr is not a terminal (disable=None).
        with tqdm(total=total, unit="B", unit_scale=True, desc=remote.name, disable=None) as bar:
            remaining = settings.deadline - (time.monotonic() - started)
            return _copy(response, target, remote, bar, remaining, settings.deadline)


def _copy(
    stream, target: Path, remote: RemoteFile, bar, seconds: float, whole: float | None = None
) -> str | None:
    """Copy ``stream`` into ``target`` through a ``GzipCheck`` within ``seconds``; return its
    verdict. ``whole``: the file's whole deadline, for the message (default ``seconds``)."""
    deadline = time.monotonic() + seconds
    check = GzipCheck(remote)
    with target.open("wb") as out:
        # read1: what has arrived, up to a chunk; read() would wait for a whole chunk.
        while chunk := stream.read1(CHUNK_BYTES):
            try:
                check.update(chunk)
            except TooLarge as error:
                raise FetchError(f"sent {error}") from None
            if time.monotonic() > deadline:
                raise FetchError(
                    f"still incomplete after the {whole or seconds:g} s deadline "
                    f"({check.size:,} bytes so far)"
                )
            out.write(chunk)
            if bar is not None:
                bar.update(len(chunk))
    return check.problem()


def mirror_folders_holding(data_mirror: str, file_name: str) -> list[str]:
    """The dataset folders of a local ``DATA_MIRROR`` (a path or ``file://`` URL) that hold
    ``file_name``, sorted; none for an ``http(s)`` mirror or a folder that does not exist."""
    parsed = urllib.parse.urlparse(data_mirror)
    if parsed.scheme in ("http", "https"):
        return []
    if parsed.scheme == "file":
        root = Path(urllib.request.url2pathname(parsed.path))
    else:
        root = Path(data_mirror).expanduser().resolve()
    if not root.is_dir():
        return []
    return sorted(path.parent.name for path in root.glob(f"*/{file_name}"))


def download_file(
    remote: RemoteFile,
    bases: list[str],
    destination: Path,
    settings: FetchSettings,
    data_mirror: str | None = None,
    dataset_name: str | None = None,
) -> str:
    """Make ``destination/remote.name`` a verified copy, fetching it if needed.

    ``data_mirror``: the ``DATA_MIRROR`` in use (its base is among ``bases``), named in the
    error so that a user who set it checks what it holds rather than setting it again.
    ``dataset_name``: the dataset the file belongs to; when the mirror lacks it but holds the
    file of another dataset, the error names that one and the param that selects it.

    Returns:
        Where the file came from (a URL), or ``"already present"``.

    Raises:
        DownloadError: No location gave a verified file; lists every location and reason.
    """
    final = destination / remote.name
    if final.is_file():
        problem = verify(final, remote)
        if problem is None:
            return "already present"
        print(f"{final}: {problem}; fetching it again", file=sys.stderr)
    failures = []
    for base in bases:
        url = urllib.parse.urljoin(base, remote.name)
        try:
            with atomic_path(final) as temporary:
                problem = copy_url(url, temporary, remote, settings)
                if problem:
                    raise FetchError(problem)
        except FetchError as error:
            failures.append(f"  {url}: {error}")
            print(f"  {url}: {error}; trying the next location", file=sys.stderr)
            continue
        return url
    if data_mirror:
        advice = (
            f"\nDATA_MIRROR is set to {data_mirror!r}: check that it holds "
            f"<dataset>/{remote.name}, a copy that passes the checks above (see README, "
            "'Offline use'), or check the network."
        )
        others = [
            name
            for name in mirror_folders_holding(data_mirror, remote.name)
            if name != dataset_name
        ]
        if dataset_name and others:
            advice += (
                f" It holds {', '.join(f'{name}/{remote.name}' for name in others)} but no "
                f"{dataset_name}/{remote.name}: to train on {others[0]}, set "
                f"`dataset: {others[0]}` in the data section of params.yaml."
            )
    else:
        advice = (
            "\nSet DATA_MIRROR to a folder or URL holding <dataset>/<file>.gz "
            "(see README, 'Offline use'), or check the network."
        )
    raise DownloadError(
        f"could not get a verified {remote.name} from any location:\n"
        + "\n".join(failures)
        + advice
    )


def download_dataset(
    dataset: Dataset, destination: Path, data_mirror: str | None, settings: FetchSettings
) -> None:
    """Fetch all files of ``dataset`` into ``destination``, printing where each came from."""
    destination.mkdir(parents=True, exist_ok=True)
    bases = source_bases(dataset, data_mirror)
    for remote in dataset.files:
        started = time.perf_counter()
        origin = download_file(remote, bases, destination, settings, data_mirror, dataset.name)
        seconds = time.perf_counter() - started
        print(f"{dataset.name}/{remote.name}: {origin} (verified, {seconds:.1f}s)")
