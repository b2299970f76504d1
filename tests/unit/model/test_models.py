import json
import re
import time
import zipfile

import keras
import numpy as np
import pytest
from helpers.paths import REPO_ROOT

from benchmarks.contenders import relu_first_model
from digits.errors import DataError
from digits.model.networks import build_model, conv_layers, load_model, predict_logits, save_model
from digits.params import load_params
from digits.params import replace as params_replace

# The table of classic models in docs/pipeline.md: `-S` overrides and the parameter count it
# reports.
PRESETS = {
    "": 242_062,
    "train.conv1_filters=32 train.conv2_filters=64 train.fc_size=1024 train.dropout=0.5": (
        3_274_634
    ),
    "train.conv1_filters=4 train.conv2_filters=8 train.fc_size=512 train.dropout=0.5 "
    "train.optimizer=sgd train.momentum=0.9 train.learning_rate=0.001": 207_258,
    "train.conv1_filters=64 train.conv2_filters=64 train.kernel_size=3 train.padding=valid": (
        243_786
    ),
    "train.kernel_size=3 train.conv1_filters=32 train.conv2_filters=64": 421_642,
    "train.model=mlp": 101_770,
    "train.model=softmax": 7_850,
}


def default_params():
    return load_params(REPO_ROOT / "params.yaml", sections=("train",)).train


def with_overrides(overrides: str):
    params = default_params()
    changes = {}
    for item in overrides.split():
        key, value = item.removeprefix("train.").split("=")
        current = getattr(params, key)
        changes[key] = type(current)(value)
    return params_replace(params, **changes)


@pytest.mark.parametrize(("overrides", "count"), PRESETS.items())
def test_parameter_count_of_each_classic_model(overrides, count):
    assert build_model(with_overrides(overrides)).count_params() == count


def test_docs_table_matches_the_pinned_presets():
    page = (REPO_ROOT / "docs" / "pipeline.md").read_text()
    rows = re.findall(r"^\|[^|]+\| `dvc exp run([^`]*)` \| ([\d,]+) \|", page, re.MULTILINE)
    found = {" ".join(re.findall(r"-S (\S+)", command)): int(count.replace(",", ""))
             for command, count in rows}  # fmt: skip
    assert found == PRESETS


def test_default_is_the_tutorial_network():
    model = build_model(default_params())
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes["conv1"] == (28, 28, 16) and shapes["pool1"] == (14, 14, 16)
    assert shapes["conv2"] == (14, 14, 36) and shapes["relu2"] == (7, 7, 36)
    assert shapes["flatten"] == (1764,) and shapes["fc"] == (128,) and shapes["logits"] == (10,)
    assert [layer.name for layer in conv_layers(model)] == ["conv1", "conv2"]
    bias = model.get_layer("fc").bias.numpy()
    np.testing.assert_allclose(bias, 0.05)
    kernel = model.get_layer("fc").kernel.numpy()
    assert np.abs(kernel).max() <= 2 * 0.05 + 1e-6  # truncated at two standard deviations
    assert 0.03 < kernel.std() < 0.05


def test_same_seed_same_weights_other_seed_other_weights():
    params = default_params()
    first = build_model(params).get_weights()
    again = build_model(params).get_weights()
    other = build_model(params_replace(params, seed=params.seed + 1)).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_load_model_round_trip_and_damaged_file(tmp_path):
    model = build_model(with_overrides("train.model=softmax"))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_model(path)
    for saved, restored in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(restored, saved)
    images = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0)
    )

    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"model.keras is damaged or not a Keras model"):
        load_model(path)
    with pytest.raises(DataError, match="not found: run `dvc repro train` first"):
        load_model(tmp_path / "absent.keras")


def test_predict_logits_matches_the_model_in_inference_mode():
    model = build_model(params_replace(default_params(), dropout=0.5))
    images = np.random.default_rng(0).random((23, 28, 28, 1), dtype=np.float32)
    expected = model(images, training=False).numpy()
    logits = predict_logits(model, images, batch_size=10)  # batches of 10, 10 and 3
    assert logits.shape == (23, 10)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    assert predict_logits(model, images[:0], batch_size=10).shape == (0, 10)


@pytest.mark.cpu_dependent
def test_the_same_model_saves_to_the_same_bytes_and_loads_back(tmp_path):
    """Keras writes the save time, Python object ids and zip entry times into a .keras file;
    save_model leaves none of them, so a retrain that changes nothing changes no hash."""
    params = params_replace(default_params(), dropout=0.5)
    paths = [tmp_path / "first.keras", tmp_path / "second.keras"]
    for path in paths:
        save_model(build_model(params), path)  # a new model object: new object ids
        time.sleep(1.1)  # zip entry times have a resolution of 2 s, metadata of 1 s
    assert paths[0].read_bytes() == paths[1].read_bytes()
    with zipfile.ZipFile(paths[0]) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert "date_saved" not in json.loads(archive.read("metadata.json"))
        ids = re.findall(r'"shared_object_id": (\d+)', archive.read("config.json").decode())
    # Shared objects (if the config has any) are numbered 1, 2, ..., not by Python id().
    assert max(map(int, ids), default=0) <= len(set(ids))
    loaded = load_model(paths[0])
    original = build_model(params)
    assert loaded.to_json() == original.to_json()
    pairs = zip(loaded.get_weights(), original.get_weights(), strict=True)
    assert all(np.array_equal(a, b) for a, b in pairs)


def tutorial_order_model(model: keras.Model) -> keras.Model:
    """``model``'s layers, but each block as the tutorial wrote it: conv -> pool -> ReLU."""
    hidden = inputs = keras.Input(shape=(28, 28, 1))
    for index in (1, 2):
        hidden = model.get_layer(f"conv{index}")(hidden)
        hidden = model.get_layer(f"pool{index}")(hidden)
        hidden = model.get_layer(f"relu{index}")(hidden)
    for name in ("flatten", "fc", "logits"):
        hidden = model.get_layer(name)(hidden)
    return keras.Model(inputs, hidden)


@pytest.mark.cpu_dependent
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_relu_before_pooling_gives_the_tutorial_outputs(padding):
    model = build_model(params_replace(default_params(), padding=padding))
    names = [layer.name for layer in model.layers]
    assert names.index("conv1") < names.index("pool1") < names.index("relu1")
    images = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    # A trained-like state: biases of both signs, so ReLU clips inside the pooling windows.
    for index in (1, 2):
        conv = model.get_layer(f"conv{index}")
        conv.bias.assign(np.linspace(-0.3, 0.3, conv.filters, dtype=np.float32))
    expected = model(images, training=False).numpy()
    logits = relu_first_model(model)(images, training=False).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(logits).max() > 0.01, "the comparison must not be between zeros"


def test_bfloat16_model_has_the_same_layers_and_float32_logits():
    full = build_model(default_params())
    mixed = build_model(params_replace(default_params(), precision="bfloat16"))
    assert [layer.name for layer in mixed.layers] == [layer.name for layer in full.layers]
    assert mixed.count_params() == full.count_params() == 242_062
    assert mixed.get_layer("conv1").compute_dtype == "bfloat16"
    assert mixed.get_layer("fc").compute_dtype == "bfloat16"
    assert mixed.get_layer("logits").compute_dtype == "float32"
    assert all(weight.dtype == "float32" for weight in mixed.weights)
    mixed.set_weights(full.get_weights())
    images = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    logits = mixed(images, training=False)
    assert logits.dtype == "float32"
    # bfloat16 keeps 8 bits of mantissa: close to float32, not equal.
    expected = full(images, training=False).numpy()
    np.testing.assert_allclose(logits.numpy(), expected, atol=0.05)
    assert not np.array_equal(logits.numpy(), expected)


def test_bfloat16_model_round_trips_through_the_keras_file(tmp_path):
    mixed = build_model(params_replace(default_params(), precision="bfloat16"))
    mixed.save(tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    assert loaded.get_layer("conv1").compute_dtype == "bfloat16"
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(loaded(images).numpy(), mixed(images).numpy())


@pytest.mark.cpu_dependent
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_conv_layers_compute_what_keras_conv2d_computes(precision):
    """Only how the bias is added differs (``tf.nn.bias_add``, which TensorFlow fuses)."""
    model = build_model(params_replace(default_params(), precision=precision))
    images = np.random.default_rng(3).random((8, 28, 28, 1), dtype=np.float32)
    for layer in conv_layers(model):
        assert type(layer).__module__ == "digits.model.networks"
        reference = keras.layers.Conv2D.from_config(layer.get_config())
        reference.build(layer.input.shape)
        reference.set_weights(layer.get_weights())
        inputs = images if layer.name == "conv1" else model.get_layer("relu1")(
            model.get_layer("pool1")(model.get_layer("conv1")(images))
        )  # fmt: skip
        ours = keras.ops.convert_to_numpy(layer(inputs)).astype(np.float32)
        theirs = keras.ops.convert_to_numpy(reference(inputs)).astype(np.float32)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_a_model_saved_with_keras_own_conv2d_still_loads(tmp_path):
    """Models trained before the conv layer was ours name Keras' Conv2D in their config."""
    model = build_model(default_params())
    config = json.loads(json.dumps(model.get_config()))
    for layer in config["layers"]:
        if layer["class_name"] == "Conv2D":
            layer["module"], layer["registered_name"] = "keras.layers", None
    older = keras.Model.from_config(config)
    older.set_weights(model.get_weights())
    assert type(older.get_layer("conv1")) is keras.layers.Conv2D
    older.save(tmp_path / "older.keras")
    loaded = load_model(tmp_path / "older.keras")
    images = np.random.default_rng(4).random((8, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(
        predict_logits(loaded, images, 4), predict_logits(model, images, 4), rtol=1e-5, atol=1e-6
    )
