"""A DATA_MIRROR that lacks the chosen dataset but holds another one says which, and the param
that selects it (the shared offline copy holds Fashion-MNIST but not MNIST's training images)."""

from __future__ import annotations

import shutil

import pytest
from helpers.downloads import FAST_FETCH

from digits.data.fetch import DownloadError, FetchSettings, download_dataset

FAST = FetchSettings(**FAST_FETCH)


@pytest.mark.parametrize("as_url", [False, True])
def test_a_mirror_with_another_dataset_names_it_and_the_param(tiny_mirror, tmp_path, as_url):
    mirror = tmp_path / "other mirror"
    shutil.copytree(tiny_mirror.root / "tiny", mirror / "clothes")
    dataset = tiny_mirror.dataset(mirrors=())
    data_mirror = mirror.as_uri() if as_url else str(mirror)
    with pytest.raises(DownloadError) as raised:
        download_dataset(dataset, tmp_path / "raw", data_mirror, FAST)
    message = str(raised.value)
    first = dataset.files[0].name
    assert f"It holds clothes/{first} but no tiny/{first}" in message
    assert "set `dataset: clothes` in the data section of params.yaml" in message


def test_a_mirror_without_any_dataset_names_none(tiny_mirror, tmp_path):
    empty = tmp_path / "empty mirror"
    empty.mkdir()
    with pytest.raises(DownloadError) as raised:
        download_dataset(tiny_mirror.dataset(mirrors=()), tmp_path / "raw", str(empty), FAST)
    assert "It holds" not in str(raised.value)
