"""Hostile download sources (issue 19, item 8): nothing is read past what the file can be,
in bounded memory and disk, within a deadline, and the next source is tried."""

import dataclasses
import gzip
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from helpers.downloads import FAST_FETCH, names_in
from helpers.paths import REPO_ROOT

from digits.data.catalog import TRAIN_IMAGES, TRAIN_LABELS
from digits.data.fetch import (
    CHUNK_BYTES,
    DownloadError,
    FetchSettings,
    download_file,
)
from digits.data.gzip_check import SLICE_BYTES, GzipCheck, gz_limit
from digits.errors import ParamsError

FAST = FetchSettings(**FAST_FETCH)
GIB = 1 << 30
MEASURE = """
import resource, sys
from pathlib import Path
from digits.data.catalog import load_dataset
from digits.data.fetch import DownloadError, FetchSettings, download_file
remote = load_dataset("tiny", sys.argv[1]).files[0]
try:
    print(download_file(remote, [sys.argv[2]], Path(sys.argv[3]), FetchSettings(retries=0)))
except DownloadError as error:
    print(error)
print("peak_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def zeros_gzip(size: int) -> bytes:
    """A valid gzip of ``size`` zero bytes, about size / 1000 on the wire (1 MiB members)."""
    member = gzip.compress(bytes(1 << 20), compresslevel=9, mtime=0)
    return member * (size >> 20)


def measured_download(tiny_mirror, url: str, out: Path) -> tuple[str, int]:
    """Fetch the tiny dataset's first file from ``url`` in a fresh Python; its output and
    peak resident memory (bytes)."""
    repo_root = REPO_ROOT
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tiny_mirror.catalog), url, str(out)],
        env={**os.environ, "PYTHONPATH": str(repo_root)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    output, peak = result.stdout.rsplit("peak_kib ", 1)
    return output, int(peak) * 1024


def test_a_gzip_bomb_stops_at_the_file_size_in_bounded_memory(tiny_mirror, http_server, tmp_path):
    good = (tiny_mirror.folder / TRAIN_IMAGES).read_bytes()
    bomb = zeros_gzip(GIB)
    assert len(bomb) < 2 << 20
    http_server.serve(f"/bomb/{TRAIN_IMAGES}", (200, bomb, 0))
    http_server.serve(f"/good/{TRAIN_IMAGES}", (200, good, 0))
    # As for MNIST's 47 MB of images: the bomb's 1 MiB on the wire is a size the gzip of the
    # real file could have, so only decompressing it shows what it is.
    tiny_mirror.entry["files"][TRAIN_IMAGES]["payload_bytes"] = 32 << 20
    tiny_mirror.dataset()
    out = tmp_path / "raw"
    out.mkdir()

    _, baseline = measured_download(tiny_mirror, f"{http_server.base}/good/", out)
    message, peak = measured_download(tiny_mirror, f"{http_server.base}/bomb/", tmp_path)

    assert "decompresses to more than the 33,554,432 bytes of train-images-idx3-ubyte" in message
    assert peak - baseline < 64 << 20, f"peak RSS {peak >> 20} MiB, {baseline >> 20} without"
    assert not (tmp_path / TRAIN_IMAGES).exists()


def test_decompression_holds_a_slice_at_a_time_however_much_a_chunk_expands(tiny_mirror):
    # One gzip member, as gzip(1) would write it: 64 KiB on the wire expand to 64 MiB.
    bomb = gzip.compress(bytes(64 << 20), compresslevel=9, mtime=0)
    big = dataclasses.replace(tiny_mirror.dataset().files[0], payload_bytes=64 << 20)
    check = GzipCheck(big)
    tracemalloc.start()
    try:
        for start in range(0, len(bomb), CHUNK_BYTES):
            check.update(bomb[start : start + CHUNK_BYTES])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert check.payload_size == 64 << 20
    assert peak < 4 * SLICE_BYTES, f"{peak} bytes held while decompressing"
    assert check.problem().startswith("checksum mismatch")


def test_an_endless_stream_stops_at_the_size_limit_with_bounded_disk(
    tiny_mirror, http_server, tmp_path
):
    sent = []

    def endless(stream) -> None:
        while sum(sent) < 50 << 20:  # 50 MiB at most, should the client never stop
            chunk = os.urandom(1 << 16)
            stream.write(chunk)
            sent.append(len(chunk))

    good = (tiny_mirror.folder / TRAIN_IMAGES).read_bytes()
    http_server.serve(f"/endless/{TRAIN_IMAGES}", (200, endless, 0))
    http_server.serve(f"/good/{TRAIN_IMAGES}", (200, good, 0))
    dataset = tiny_mirror.dataset(
        mirrors=(f"{http_server.base}/endless/", f"{http_server.base}/good/")
    )
    out = tmp_path / "raw"
    out.mkdir()
    peak_disk, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            size = sum(path.stat().st_size for path in out.iterdir() if path.exists())
            peak_disk[0] = max(peak_disk[0], size)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with pytest.raises(DownloadError, match=r"/endless/.*: sent more than [\d,]+ bytes"):
            download_file(dataset.files[0], [dataset.mirrors[0]], out, FAST)
    finally:
        stop.set()
        watcher.join()
    limit = gz_limit(dataset.files[0].payload_bytes)
    assert peak_disk[0] <= limit
    assert names_in(out) == set()
    assert download_file(dataset.files[0], list(dataset.mirrors), out, FAST).endswith(
        "/good/" + TRAIN_IMAGES
    )


def test_a_too_large_content_length_is_refused_before_reading(tiny_mirror, http_server, tmp_path):
    limit = gz_limit(tiny_mirror.dataset().files[1].payload_bytes)
    http_server.serve(f"/{TRAIN_LABELS}", (200, bytes(limit + 1), 0))
    dataset = tiny_mirror.dataset(mirrors=(f"{http_server.base}/",))
    with pytest.raises(DownloadError, match=rf"announces {limit + 1:,} bytes, more than any"):
        download_file(dataset.files[1], list(dataset.mirrors), tmp_path, FAST)


def test_a_dripping_source_hits_the_deadline_and_the_next_source_is_used(
    tiny_mirror, http_server, tmp_path, capsys
):
    good = (tiny_mirror.folder / TRAIN_LABELS).read_bytes()

    def drip(stream) -> None:
        for byte in good[:150]:  # one byte every 0.2 s: each read is quick, the whole is not
            stream.write(bytes([byte]))
            stream.flush()
            time.sleep(0.2)

    http_server.serve(f"/drip/{TRAIN_LABELS}", (200, drip, 0))
    http_server.serve(f"/good/{TRAIN_LABELS}", (200, good, 0))
    dataset = tiny_mirror.dataset(
        mirrors=(f"{http_server.base}/drip/", f"{http_server.base}/good/")
    )
    settings = FetchSettings(timeout=1.0, retries=1, backoff=0.01, deadline=2.0)
    started = time.monotonic()

    origin = download_file(dataset.files[1], list(dataset.mirrors), tmp_path, settings)

    assert origin.endswith(f"/good/{TRAIN_LABELS}")
    assert time.monotonic() - started < 10
    assert "still incomplete after the 2 s deadline" in capsys.readouterr().err
    assert http_server.routes[f"/drip/{TRAIN_LABELS}"].hits == 1, "a deadline is not retried"


def test_a_huge_local_file_is_read_no_further_than_the_file_can_be(tiny_mirror, tmp_path):
    huge = tmp_path / "huge" / "tiny" / TRAIN_IMAGES
    huge.parent.mkdir(parents=True)
    with huge.open("wb") as stream:  # sparse: 1 GiB that takes no disk
        stream.truncate(GIB)
    dataset = tiny_mirror.dataset()
    out = tmp_path / "raw"
    out.mkdir()
    with pytest.raises(DownloadError, match=r"sent more than [\d,]+ bytes"):
        download_file(dataset.files[0], [(tmp_path / "huge" / "tiny").as_uri() + "/"], out, FAST)
    assert names_in(out) == set()


def test_a_catalog_entry_needs_the_size_of_each_file(tiny_mirror):
    del tiny_mirror.entry["files"][TRAIN_LABELS]["payload_bytes"]
    with pytest.raises(ParamsError, match="missing or malformed entry 'payload_bytes'"):
        tiny_mirror.dataset()
    tiny_mirror.entry["files"][TRAIN_LABELS]["payload_bytes"] = 0
    with pytest.raises(ParamsError, match="payload_bytes must be a positive integer"):
        tiny_mirror.dataset()
