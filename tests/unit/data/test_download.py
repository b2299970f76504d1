import gzip
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers.downloads import FAST_FETCH, names_in
from helpers.paths import REPO_ROOT

from digits.data.catalog import FILE_NAMES, TRAIN_IMAGES, TRAIN_LABELS
from digits.data.fetch import (
    DownloadError,
    FetchError,
    FetchSettings,
    _NoDowngradeRedirects,
    download_dataset,
    download_file,
    source_bases,
    verify,
)

FAST = FetchSettings(**FAST_FETCH)


def serve_dataset(server, mirror, prefix: str) -> None:
    for name in FILE_NAMES:
        server.serve(f"{prefix}{name}", (200, (mirror.folder / name).read_bytes(), 0))


def test_all_files_from_http_mirror_are_verified_and_in_place(tiny_mirror, http_server, tmp_path):
    serve_dataset(http_server, tiny_mirror, "/a/")
    dataset = tiny_mirror.dataset(mirrors=(f"{http_server.base}/a/",))
    out = tmp_path / "raw"

    download_dataset(dataset, out, None, FAST)

    assert names_in(out) == set(FILE_NAMES)
    for remote in dataset.files:
        assert verify(out / remote.name, remote) is None


def test_wrong_checksum_moves_on_to_a_good_second_mirror(tiny_mirror, http_server, tmp_path):
    good = (tiny_mirror.folder / TRAIN_LABELS).read_bytes()
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    http_server.serve(f"/bad/{TRAIN_LABELS}", (200, bytes(flipped), 0))
    http_server.serve(f"/good/{TRAIN_LABELS}", (200, good, 0))
    dataset = tiny_mirror.dataset(
        mirrors=(f"{http_server.base}/bad/", f"{http_server.base}/good/")
    )

    origin = download_file(dataset.files[1], list(dataset.mirrors), tmp_path, FAST)

    assert origin.endswith(f"/good/{TRAIN_LABELS}")
    assert (tmp_path / TRAIN_LABELS).read_bytes() == good


def test_recompressed_file_is_accepted_by_its_payload_hash(tiny_mirror, http_server, tmp_path):
    payload = gzip.decompress((tiny_mirror.folder / TRAIN_LABELS).read_bytes())
    http_server.serve(f"/{TRAIN_LABELS}", (200, gzip.compress(payload, compresslevel=1), 0))
    dataset = tiny_mirror.dataset(mirrors=(f"{http_server.base}/",))

    download_file(dataset.files[1], list(dataset.mirrors), tmp_path, FAST)

    assert gzip.decompress((tmp_path / TRAIN_LABELS).read_bytes()) == payload


def test_500_then_200_is_retried(tiny_mirror, http_server, tmp_path):
    good = (tiny_mirror.folder / TRAIN_LABELS).read_bytes()
    http_server.serve(f"/{TRAIN_LABELS}", (500, b"oops", 0), (503, b"busy", 0), (200, good, 0))
    dataset = tiny_mirror.dataset(mirrors=(f"{http_server.base}/",))

    download_file(dataset.files[1], list(dataset.mirrors), tmp_path, FAST)

    assert (tmp_path / TRAIN_LABELS).read_bytes() == good
    assert http_server.routes[f"/{TRAIN_LABELS}"].hits == 3


def test_404_is_not_retried_and_every_failure_is_listed(tiny_mirror, http_server, tmp_path):
    http_server.serve(f"/html/{TRAIN_LABELS}", (200, b"<html>Error</html>", 0))
    http_server.serve(f"/down/{TRAIN_LABELS}", (500, b"", 0))
    bases = [
        f"{http_server.base}/missing/",
        f"{http_server.base}/html/",
        f"{http_server.base}/down/",
        tiny_mirror.root.as_uri() + "/elsewhere/",
    ]
    dataset = tiny_mirror.dataset()

    out = tmp_path / "raw"
    out.mkdir()

    with pytest.raises(DownloadError) as raised:
        download_file(dataset.files[1], bases, out, FAST)

    message = str(raised.value)
    assert f"/missing/{TRAIN_LABELS}: HTTP 404" in message
    assert (
        f"/html/{TRAIN_LABELS}: not a gzip file (18 bytes starting '<html>Error</ht')" in message
    )
    assert f"/down/{TRAIN_LABELS}: HTTP 500" in message
    assert f"/elsewhere/{TRAIN_LABELS}: no such file" in message
    assert "DATA_MIRROR" in message
    assert http_server.routes[f"/down/{TRAIN_LABELS}"].hits == FAST.retries + 1
    assert names_in(out) == set(), "no partial or temporary file may stay behind"


def test_stalled_response_hits_the_timeout_instead_of_hanging(tiny_mirror, http_server, tmp_path):
    good = (tiny_mirror.folder / TRAIN_LABELS).read_bytes()
    http_server.serve(f"/slow/{TRAIN_LABELS}", (200, good, 30))
    http_server.serve(f"/fast/{TRAIN_LABELS}", (200, good, 0))
    dataset = tiny_mirror.dataset(
        mirrors=(f"{http_server.base}/slow/", f"{http_server.base}/fast/")
    )
    settings = FetchSettings(timeout=0.3, retries=1, backoff=0.01)

    origin = download_file(dataset.files[1], list(dataset.mirrors), tmp_path, settings)

    assert origin.endswith(f"/fast/{TRAIN_LABELS}")
    assert http_server.routes[f"/slow/{TRAIN_LABELS}"].hits == 2


def test_folder_and_file_url_mirrors(tiny_mirror, tmp_path):
    dataset = tiny_mirror.dataset()
    for name, mirror in [("folder", str(tiny_mirror.root)), ("url", tiny_mirror.root.as_uri())]:
        out = tmp_path / name
        download_dataset(dataset, out, mirror, FAST)
        assert names_in(out) == set(FILE_NAMES)


def test_data_mirror_comes_first_and_relative_folders_are_resolved(tiny_mirror, monkeypatch):
    dataset = tiny_mirror.dataset(mirrors=("https://example.invalid/x/",))
    monkeypatch.chdir(tiny_mirror.root.parent)
    bases = source_bases(dataset, "mirror")
    assert bases == [tiny_mirror.root.as_uri() + "/tiny/", "https://example.invalid/x/"]
    assert source_bases(dataset, "https://host/data/") == ["https://host/data/tiny/", bases[1]]


def test_a_data_mirror_that_is_set_is_named_not_asked_for(tiny_mirror, tmp_path):
    dataset = tiny_mirror.dataset(mirrors=())
    empty = tmp_path / "empty mirror"
    empty.mkdir()
    with pytest.raises(DownloadError) as raised:
        download_dataset(dataset, tmp_path / "raw", str(empty), FAST)
    message = str(raised.value)
    assert f"DATA_MIRROR is set to {str(empty)!r}: check that it holds <dataset>/" in message
    assert "Set DATA_MIRROR" not in message


def test_verified_file_is_kept_and_a_wrong_one_fetched_again(tiny_mirror, http_server, tmp_path):
    good = (tiny_mirror.folder / TRAIN_LABELS).read_bytes()
    http_server.serve(f"/{TRAIN_LABELS}", (200, good, 0))
    dataset = tiny_mirror.dataset(mirrors=(f"{http_server.base}/",))
    target = tmp_path / TRAIN_LABELS
    target.write_bytes(good)

    assert download_file(dataset.files[1], list(dataset.mirrors), tmp_path, FAST) == (
        "already present"
    )
    assert http_server.routes[f"/{TRAIN_LABELS}"].hits == 0

    target.write_bytes(good[:-3])
    download_file(dataset.files[1], list(dataset.mirrors), tmp_path, FAST)
    assert target.read_bytes() == good
    assert http_server.routes[f"/{TRAIN_LABELS}"].hits == 1


def test_https_never_redirects_to_http():
    handler = _NoDowngradeRedirects()
    request = urllib.request.Request("https://mirror.example/file.gz")

    with pytest.raises(FetchError, match="refused redirect from https to http://"):
        handler.redirect_request(request, None, 302, "Found", {}, "http://mirror.example/f")
    follow = handler.redirect_request(request, None, 302, "Found", {}, "https://other.example/f")
    assert follow.full_url == "https://other.example/f"


def test_interrupted_download_leaves_no_file_under_the_final_name(
    tiny_mirror, http_server, tmp_path
):
    good = (tiny_mirror.folder / TRAIN_IMAGES).read_bytes()
    http_server.serve(f"/{TRAIN_IMAGES}", (200, good, 30))
    tiny_mirror.dataset(mirrors=(f"{http_server.base}/",))
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  dataset: tiny\n  validation_size: 10\n  seed: 0\n")
    out = tmp_path / "raw"
    repo_root = REPO_ROOT
    env = {**os.environ, "DATA_MIRROR": "", "PYTHONPATH": str(repo_root)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stages.download",
            "--params",
            str(params),
            "--catalog",
            str(tiny_mirror.catalog),
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupt once the download is under way (the server has answered and stalls).
    deadline = time.monotonic() + 60
    while http_server.routes[f"/{TRAIN_IMAGES}"].hits == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert names_in(out) == set()


def test_truncated_gzip_moves_on_to_the_next_mirror(tiny_mirror, http_server, tmp_path):
    good = (tiny_mirror.folder / TRAIN_IMAGES).read_bytes()
    http_server.serve(f"/cut/{TRAIN_IMAGES}", (200, good[: len(good) // 2], 0))
    http_server.serve(f"/ok/{TRAIN_IMAGES}", (200, good, 0))
    dataset = tiny_mirror.dataset(mirrors=(f"{http_server.base}/cut/", f"{http_server.base}/ok/"))
    out = tmp_path / "raw"
    out.mkdir()

    with pytest.raises(DownloadError, match=r"/cut/.*damaged gzip data"):
        download_file(dataset.files[0], [dataset.mirrors[0]], out, FAST)
    assert names_in(out) == set()

    assert download_file(dataset.files[0], list(dataset.mirrors), out, FAST).endswith(
        "/ok/" + TRAIN_IMAGES
    )
