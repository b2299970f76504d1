import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.browser import broken_images, chromium
from helpers.idxdata import CLASS_NAMES as NAMES
from helpers.idxdata import tiny_split
from helpers.paramsfile import TRACKING_OFF, params_copy
from helpers.paths import REPO_ROOT

from digits.data.arrays import save_split
from digits.errors import ParamsError
from digits.figures.network import filters_figure, layer_output_figure, predictions_figure
from digits.model.networks import build_model, conv_layers, load_model, model_summary
from digits.model.training import check_precision, train
from digits.params import VisualizeParams, load_params
from digits.params import replace as params_replace
from digits.runtime.stopping import run_stage
from stages import visualize

TEST_SIZE = 40
# The default params.yaml draws input channels [0, 1] and test images [0, 13].
DEFAULT_FILES = {
    "model_summary.txt",
    "predictions.png",
    "filters/conv1_in0.png",
    "filters/conv2_in0.png",
    "filters/conv2_in1.png",
    "layers/conv1_image0.png",
    "layers/conv1_image13.png",
    "layers/conv2_image0.png",
    "layers/conv2_image13.png",
}


def train_params(**changes):
    params = load_params(REPO_ROOT / "params.yaml", sections=("train",)).train
    return params_replace(params, **changes)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained CNN (conv 4/6), an untrained MLP and a 40-image test split on disk."""
    folder = tmp_path_factory.mktemp("visualize")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # stages write only inside the working directory
        return _write_files(folder)


def _write_files(folder: Path) -> dict[str, Path]:
    params = train_params(
        conv1_filters=4, conv2_filters=6, fc_size=16, steps=30, eval_every=30, batch_size=8,
        learning_rate=0.003,
    )  # fmt: skip
    train(params, tiny_split(60, 1), tiny_split(10, 2)).model.save(folder / "cnn.keras")
    build_model(train_params(model="mlp", fc_size=16)).save(folder / "mlp.keras")
    test = tiny_split(TEST_SIZE, 3)
    save_split(folder / "test.npz", test.x, test.y, NAMES)
    files = {"cnn": folder / "cnn.keras", "mlp": folder / "mlp.keras", "test": folder / "test.npz"}
    try:
        check_precision("bfloat16")
    except ParamsError:  # an AVX2-only CPU: no bfloat16 model to draw
        return files
    params = params_replace(params, precision="bfloat16")
    train(params, tiny_split(60, 1), tiny_split(10, 2)).model.save(folder / "bfloat16.keras")
    return {**files, "bfloat16": folder / "bfloat16.keras"}


def run(files, tmp_path, model="cnn", **visualize_params) -> tuple[int, Path]:
    """Run the stage as `dvc repro` would; returns the exit code and the output folder."""
    params_copy(tmp_path, {"visualize": visualize_params, **TRACKING_OFF})
    out = tmp_path / "plots" / "visualize"
    argv = ["--params", str(tmp_path / "params.yaml"), "--model", str(files[model])]
    argv += ["--test", str(files["test"]), "--out", str(out), "--run", str(tmp_path / "run.json")]
    return run_stage(visualize.main, argv), out


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, read from the PNG header."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def image_axes(figure) -> list:
    return [axis for axis in figure.axes if axis.images]


def test_default_params_write_every_picture_with_sensible_sizes(files, tmp_path, capsys):
    code, out = run(files, tmp_path)

    assert code == 0
    written = {str(path.relative_to(out)) for path in out.rglob("*") if path.is_file()}
    assert written == DEFAULT_FILES
    for name in DEFAULT_FILES - {"model_summary.txt"}:
        width, height = png_size(out / name)
        assert 300 <= width <= 1600 and 250 <= height <= 1200, (name, width, height)
    printed = capsys.readouterr().out
    assert "notice: conv1 has 1 input channel: input channel 1 skipped" in printed
    assert f"wrote {len(DEFAULT_FILES)} files to {out}" in printed
    assert [path.name for path in out.parent.iterdir()] == ["visualize"], "no temporary folders"


def test_a_bfloat16_model_gets_every_picture(files, tmp_path):
    """Its layers output bfloat16, which matplotlib cannot scale (the fast recipe's model).
    Run as DVC runs it, in a process of its own: inside pytest's process the same drawing
    went through."""
    if "bfloat16" not in files:
        pytest.skip("this CPU has no bfloat16 convolution (AVX2 only)")
    params_copy(tmp_path, TRACKING_OFF)
    out = tmp_path / "plots" / "visualize"
    result = subprocess.run(
        [sys.executable, "-m", "stages.visualize", "--params", "params.yaml",
         "--model", str(files["bfloat16"]), "--test", str(files["test"]), "--out", str(out),
         "--run", "run.json"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    written = {str(path.relative_to(out)) for path in out.rglob("*") if path.is_file()}
    assert written == DEFAULT_FILES


def test_rerun_replaces_the_folder_so_no_stale_pictures_stay(files, tmp_path):
    run(files, tmp_path)
    code, out = run(files, tmp_path, images=[5], input_channels=[0])
    assert code == 0
    assert sorted(path.name for path in (out / "layers").iterdir()) == [
        "conv1_image5.png",
        "conv2_image5.png",
    ]
    assert sorted(path.name for path in (out / "filters").iterdir()) == [
        "conv1_in0.png",
        "conv2_in0.png",
    ]


def test_out_of_range_image_index_stops_with_the_index_and_valid_range(files, tmp_path, capsys):
    code, out = run(files, tmp_path, images=[0, TEST_SIZE])
    assert code == 1
    assert capsys.readouterr().err.strip() == (
        f"error: visualize.images: index {TEST_SIZE} is out of range; the test set has "
        f"{TEST_SIZE} images, so use 0 to {TEST_SIZE - 1}"
    )
    assert not out.parent.exists() or not any(out.parent.iterdir()), "nothing half-written"


def test_mlp_model_gets_predictions_and_summary_and_a_notice(files, tmp_path, capsys):
    code, out = run(files, tmp_path, model="mlp")

    assert code == 0
    written = {str(path.relative_to(out)) for path in out.rglob("*") if path.is_file()}
    assert written == {"model_summary.txt", "predictions.png"}
    assert sorted(path.name for path in out.iterdir() if path.is_dir()) == ["filters", "layers"]
    assert capsys.readouterr().out.count("notice:") == 1
    assert "Model: mlp" in (out / "model_summary.txt").read_text()


def cnn_plan(files, images=(0,), input_channels=(0,)):
    model = load_model(files["cnn"])
    params = VisualizeParams(input_channels=input_channels, images=images)
    return visualize.make_plan(model, params, TEST_SIZE)


def test_plan_skips_channels_a_layer_lacks_and_rejects_channels_no_layer_has(files):
    plan = cnn_plan(files, images=(3, 3, 1), input_channels=(1, 0, 1))
    assert plan.filters == (("conv1", 0), ("conv2", 1), ("conv2", 0))
    assert plan.outputs == (("conv1", 3), ("conv1", 1), ("conv2", 3), ("conv2", 1))
    assert plan.notices == ("conv1 has 1 input channel: input channel 1 skipped",)

    # conv2 reads conv1's 4 channels, the widest input of this model.
    with pytest.raises(ParamsError) as error:
        cnn_plan(files, input_channels=(0, 4))
    assert str(error.value) == (
        "visualize.input_channels: channel 4 is out of range; the widest conv layer (conv2) "
        "has 4 input channels, so use 0 to 3"
    )


@pytest.mark.parametrize("count", [1, 6, 36])
def test_filter_grid_has_one_tile_per_filter_on_a_symmetric_scale(count):
    kernel = np.random.default_rng(0).normal(size=(5, 5, 2, count)).astype(np.float32)
    kernel[0, 0, 1, 0] = -9.0  # the largest magnitude, negative, in the drawn channel

    figure = filters_figure(kernel, "conv2", channel=1)

    tiles = image_axes(figure)
    assert len(tiles) == count
    assert {tile.images[0].get_clim() for tile in tiles} == {(-9.0, 9.0)}
    np.testing.assert_array_equal(tiles[-1].images[0].get_array(), kernel[:, :, 1, -1])
    assert tiles[0].images[0].get_cmap().name == "RdBu_r"


def test_filters_of_the_trained_model_match_its_filter_count(files):
    model = load_model(files["cnn"])
    for layer in conv_layers(model):
        kernel = layer.kernel.numpy()
        assert len(image_axes(filters_figure(kernel, layer.name, 0))) == kernel.shape[-1]


def test_layer_output_figure_shows_the_input_beside_every_channel():
    output = np.zeros((7, 7, 5), np.float32)
    output[..., 2] = 4.0  # one strong channel sets the shared scale
    output[..., 3] = 1.0
    image = np.full((28, 28, 1), 0.5, np.float32)

    tiles = image_axes(layer_output_figure(image, output, "conv2 output"))

    assert len(tiles) == 1 + 5
    np.testing.assert_array_equal(tiles[0].images[0].get_array(), image[..., 0])
    assert {tile.images[0].get_clim() for tile in tiles[1:]} == {(0.0, 4.0)}


def test_block_output_is_after_pooling_and_relu(files):
    model = load_model(files["cnn"])
    assert visualize.block_output(model, "conv1") is model.get_layer("relu1").output
    assert tuple(visualize.block_output(model, "conv2").shape[1:]) == (7, 7, 6)


def test_predictions_grid_titles_and_marks_wrong_guesses():
    split = tiny_split(9, 0)  # labels 0..8
    probabilities = np.eye(10, dtype=np.float32)[[0, 1, 2, 3, 4, 5, 6, 7, 0]] * 0.9 + 0.01

    figure = predictions_figure(split, probabilities)

    tiles = image_axes(figure)
    assert len(tiles) == 9
    assert tiles[0].get_title() == "#0 true: class0\npredicted: class0 (91%)"
    assert tiles[8].get_title() == "#8 true: class8\npredicted: class0 (91%)"
    assert [tile.title.get_color() for tile in tiles].count("red") == 1
    assert tiles[8].title.get_color() == "red"


def test_model_summary_lists_layers_shapes_and_the_true_total(files):
    model = load_model(files["cnn"])
    summary = model_summary(model)

    lines = summary.splitlines()
    assert lines[0] == "Model: cnn"
    rows = {line.split()[0]: line for line in lines[2:-1]}
    assert list(rows) == [layer.name for layer in model.layers]
    assert "(batch, 14, 14, 4)" in rows["pool1"] and rows["conv1"].endswith(" 104")
    per_layer = sum(int(line.split()[-1].replace(",", "")) for line in rows.values())
    assert per_layer == model.count_params()
    assert lines[-1] == f"Total parameters: {model.count_params():,} (trainable: {per_layer:,})"


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([\w-]+)'", output)


@pytest.mark.slow
def test_dvc_runs_visualize_alone_on_its_params_and_plots_show_renders_it(project):
    first = project.run("dvc", "repro")
    assert stages_run(first.stdout)[-1] == "visualize"
    assert "notice: conv1 has 1 input channel: input channel 1 skipped" in first.stdout
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "baseline run")

    project.set_params({"visualize": {"images": [1, 2]}})
    again = project.run("dvc", "repro")
    assert stages_run(again.stdout) == ["visualize"]
    pictures = {
        f"plots/visualize/{name}"
        for name in (DEFAULT_FILES - {"model_summary.txt"})
        if "_image" not in name
    } | {f"plots/visualize/layers/conv{k}_image{i}.png" for k in (1, 2) for i in (1, 2)}
    on_disk = {
        str(path.relative_to(project.root)) for path in project.root.glob("plots/visualize/*/*")
    }
    assert on_disk | {"plots/visualize/predictions.png"} == pictures

    project.run("dvc", "plots", "show", "--out", "dvc_plots")
    page = project.root / "dvc_plots" / "index.html"
    sources = re.findall(r'<img src="([^"]+)"', page.read_text())
    # DVC copies each image to static/<revision>_<path with _ for />.
    for picture in pictures:
        flat = picture.replace("/", "_")
        assert any(source.endswith(flat) for source in sources), (picture, sources)

    with chromium() as driver:
        driver.get(page.as_uri())
        shown = driver.execute_script("return Array.from(document.images).map(i => i.src);")
        assert len(shown) == len(sources) >= len(pictures)
        assert broken_images(driver) == []
