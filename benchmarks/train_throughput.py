"""Benchmark: the train stage's loop against plain ``model.fit`` and a TF1 ``feed_dict`` loop.

In one process, on the same model, data and batch size, each contender runs ``--steps``
optimizer steps per round; rounds are interleaved (a, b, c, a, b, c, ...) after a warm-up so
that load from other processes hits every contender alike, and the median images/s is kept.
Batched inference is timed the same way. Then, in a temporary copy of the project, DVC runs
the pipeline to time download + preprocess and a no-op ``dvc repro``, and the train stage
runs once more as a child process to read its peak resident memory.

Run it with ``make bench`` (``DATA_MIRROR`` set: real Fashion-MNIST from that mirror; unset:
generated images of the same shape). It writes ``metrics/bench.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from ruamel.yaml import YAML

from stages import idx, training
from stages.arrays import Split, load_split
from stages.atomic import write_json
from stages.datasets import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from stages.models import INIT_BIAS, INIT_STDDEV, build_model, predict_logits
from stages.params import TrainParams, load_params, read_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
# A timed round runs ``steps`` steps; a runner takes a step count and returns when done.
Runner = Callable[[int], None]


def project_trainer(params: TrainParams, train_split: Split) -> Runner:
    """The train stage's own loop: its seeding, model, optimizer, schedule and chunk runner."""
    training.seed_everything(params.seed)
    model = build_model(params)
    optimizer = training.make_optimizer(params)
    run_chunk = training.make_chunk_runner(model, optimizer, train_split)
    count = len(train_split.x)

    def run(steps: int) -> None:
        schedule = training.batch_schedule(count, params.batch_size, steps, params.seed)
        loss_sum, _ = run_chunk(schedule)
        float(loss_sum)  # wait for the result

    return run


def gradients_only_trainer(params: TrainParams, train_split: Split) -> Runner:
    """The train stage's step without its update: a ceiling for any training step of this
    model built from TensorFlow's kernels.

    The same model, loss, batches and compiled loop as ``training.make_chunk_runner``, but the
    gradients are only summed into the loop's result (which keeps them from being pruned);
    no weight changes. Steps run one after another, as they must when each step's forward
    pass needs the weights the previous one updated: left to overlap, this loop ran 10-13%
    faster than any real training step could.
    """
    training.seed_everything(params.seed)
    model = build_model(params)
    images, labels = tf.constant(train_split.x), tf.constant(train_split.y)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def run_chunk(batches: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for step in tf.range(tf.shape(batches)[0]):
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            x, y = tf.gather(images, batches[step]), tf.gather(labels, batches[step])
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            gradients = tape.gradient(loss, variables)
            total += tf.add_n([tf.reduce_sum(gradient) for gradient in gradients])
        return total

    count = len(train_split.x)

    def run(steps: int) -> None:
        float(run_chunk(training.batch_schedule(count, params.batch_size, steps, params.seed)))

    return run


def training_flops_per_image(model: keras.Model) -> int:
    """Floating-point operations of one training image through ``model``, counted by hand.

    A multiply-add is 2; the forward pass is the convolutions' and dense layers' products
    (biases, pooling and activations are left out); the backward pass costs twice as much,
    but for the input gradient of the first layer, which nothing needs.
    """
    forward = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel.shape  # (height, width, in, out)
            positions = int(np.prod(layer.output.shape[1:3]))
            forward.append(2 * positions * int(np.prod(kernel)))
        elif isinstance(layer, keras.layers.Dense):
            forward.append(2 * int(np.prod(layer.kernel.shape)))
    return 3 * sum(forward) - forward[0]


def matmul_gflops(size: int = 2048, repeats: int = 5, products: int = 10) -> float:
    """The machine's float32 matrix-product rate through TensorFlow, best of ``repeats``."""
    a = tf.random.stateless_normal([size, size], seed=[0, 1])
    b = tf.random.stateless_normal([size, size], seed=[0, 2])

    @tf.function
    def multiply() -> tf.Tensor:
        total = tf.constant(0.0)
        for _ in tf.range(products):
            total += tf.matmul(a, b)[0, 0]  # one product per iteration, none folded away
        return total

    float(multiply())  # trace
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        float(multiply())
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 * products / min(seconds) / 1e9


def arithmetic_limit(params: TrainParams) -> dict[str, float]:
    """What the machine's matrix-product rate allows for training images/s of this model."""
    flops = training_flops_per_image(build_model(params))
    gflops = matmul_gflops()
    return {
        "matmul_gflops": round(gflops, 1),
        "training_mflop_per_image": round(flops / 1e6, 2),
        "images_per_second": round(gflops * 1e9 / flops),
    }


def keras_fit_trainer(params: TrainParams, train_split: Split) -> Runner:
    """Plain ``model.fit`` on NumPy arrays, same model, optimizer and loss."""
    model = build_model(params)
    model.compile(
        optimizer=training.make_optimizer(params),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    def run(steps: int) -> None:
        count = steps * params.batch_size
        if count > len(train_split.x):
            raise ValueError(
                f"{steps} steps of {params.batch_size} need {count} images; the train split has "
                f"{len(train_split.x)}: time fewer steps per round"
            )
        model.fit(
            train_split.x[:count], train_split.y[:count], batch_size=params.batch_size, verbose=0
        )

    return run


def tf1_graph(params: TrainParams) -> tuple[tf.Graph, dict[str, tf.Tensor | tf.Operation]]:
    """The classic tutorial's CNN as a TF1 graph: placeholders, conv/pool/ReLU twice, fc.

    Built in its own graph so it does not touch the eager models.

    Returns:
        The graph and its ``x``, ``y``, ``logits``, ``train_op`` and ``init``.

    Raises:
        ValueError: ``params.model`` is not ``cnn``, the only model written here.
    """
    if params.model != "cnn":
        raise ValueError(f"train.model: {params.model!r}; the TF1 contender is only a cnn")
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(params.seed)
        x = v1.placeholder(tf.float32, [None, 28, 28, 1], name="x")
        y = v1.placeholder(tf.float32, [None, 10], name="y")

        def variable(shape: list[int]) -> tuple[tf.Variable, tf.Variable]:
            weights = v1.Variable(v1.truncated_normal(shape, stddev=INIT_STDDEV))
            return weights, v1.Variable(tf.fill(shape[-1:], INIT_BIAS))

        hidden, channels = x, 1
        for filters in (params.conv1_filters, params.conv2_filters):
            weights, biases = variable([params.kernel_size, params.kernel_size, channels, filters])
            padding = params.padding.upper()
            hidden = tf.nn.conv2d(hidden, weights, strides=1, padding=padding) + biases
            hidden = tf.nn.relu(tf.nn.max_pool2d(hidden, 2, strides=2, padding=padding))
            channels = filters
        flat = tf.reshape(hidden, [-1, int(np.prod(hidden.shape[1:]))])
        weights, biases = variable([flat.shape[1], params.fc_size])
        hidden = tf.nn.relu(flat @ weights + biases)
        weights, biases = variable([params.fc_size, 10])
        logits = hidden @ weights + biases
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train_op = v1.train.AdamOptimizer(params.learning_rate).minimize(loss)
        initialize = v1.global_variables_initializer()
    graph.finalize()
    return graph, {"x": x, "y": y, "logits": logits, "train_op": train_op, "init": initialize}


def tf1_session(params: TrainParams) -> tuple[tf.compat.v1.Session, dict]:
    """A session on ``tf1_graph(params)`` with its variables initialised."""
    graph, nodes = tf1_graph(params)
    session = tf.compat.v1.Session(graph=graph)
    session.run(nodes["init"])
    return session, nodes


def tf1_trainer(params: TrainParams, train_split: Split) -> Runner:
    """The tutorial's loop: NumPy picks a random batch, ``session.run`` gets it by feed_dict."""
    session, nodes = tf1_session(params)
    rng = np.random.default_rng(params.seed)

    def run(steps: int) -> None:
        for _ in range(steps):
            batch = rng.integers(0, len(train_split.x), params.batch_size)
            feed = {nodes["x"]: train_split.x[batch], nodes["y"]: train_split.y[batch]}
            session.run(nodes["train_op"], feed_dict=feed)

    return run


def project_predictor(model: keras.Model, images: np.ndarray, batch_size: int) -> Runner:
    """The evaluate stage's batched inference (``models.predict_logits``) on ``images``."""

    def run(steps: int) -> None:
        for _ in range(steps):
            predict_logits(model, images, batch_size)

    return run


def tf1_predictor(params: TrainParams, images: np.ndarray, batch_size: int) -> Runner:
    """Batched TF1 inference: one ``session.run(logits, feed_dict)`` per batch."""
    session, nodes = tf1_session(params)

    def run(steps: int) -> None:
        for _ in range(steps):
            for start in range(0, len(images), batch_size):
                session.run(nodes["logits"], {nodes["x"]: images[start : start + batch_size]})

    return run


def round_rates(
    runners: dict[str, Runner], steps: int, repeats: int, images_per_step: int
) -> dict[str, list[float]]:
    """Warm each runner up, then time ``repeats`` interleaved rounds of ``steps`` steps.

    Returns:
        Images per second of each round, by runner name.
    """
    for run in runners.values():
        run(min(steps, 20))  # traces, builds optimizer slots, fills caches
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            started = time.perf_counter()
            run(steps)
            rates[name].append(round(steps * images_per_step / (time.perf_counter() - started)))
    return rates


def summarise(rounds: dict[str, list[float]], reference: str) -> dict:
    """Median images/s by name, each median's ratio to ``reference``'s, and every round."""
    medians = {name: statistics.median(rates) for name, rates in rounds.items()}
    return {
        "images_per_second": medians,
        f"{reference}_over": {
            name: round(medians[reference] / median, 2)
            for name, median in medians.items()
            if name != reference
        },
        "rounds": rounds,
    }


def copy_project(destination: Path) -> None:
    """Copy the files git knows (tracked, and new ones not ignored) into ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        if (REPO_ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, destination / name)


def generated_mirror(folder: Path, train_count: int, test_count: int, seed: int = 0) -> dict:
    """Write random IDX files of Fashion-MNIST's shape into ``folder``.

    Returns:
        The datasets.yaml entry whose checksums verify them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for images_name, labels_name, count in [
        (TRAIN_IMAGES, TRAIN_LABELS, train_count),
        (TEST_IMAGES, TEST_LABELS, test_count),
    ]:
        arrays[images_name] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        arrays[labels_name] = rng.integers(0, 10, count, dtype=np.uint8)
    files = {}
    for name, array in arrays.items():
        payload = idx.encode(array)
        compressed = gzip.compress(payload, compresslevel=1, mtime=0)
        (folder / name).write_bytes(compressed)
        files[name] = {
            "gz_sha256": hashlib.sha256(compressed).hexdigest(),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
        }
    return {"mirrors": [], "class_names": [f"class{k}" for k in range(10)], "files": files}


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run ``command``; return its wall-clock seconds. Raises if it fails, with its output."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {result.returncode} in {cwd}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return time.perf_counter() - started


def peak_memory_mib(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run ``command`` as a child process; return its peak resident memory in MiB.

    ``os.wait4`` gives the usage of that one child (``RUSAGE_CHILDREN`` would mix in every
    earlier child, such as DVC).
    """
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            log.seek(0)
            output = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(command)} exited {process.returncode}:\n{output}")
    # ru_maxrss is KiB on Linux, bytes on macOS.
    return usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def update_params(path: Path, updates: dict[str, dict]) -> None:
    """Merge ``{section: {key: value}}`` into a params.yaml, keeping its comments."""
    yaml = YAML()
    raw = yaml.load(path.read_text())
    for section, values in updates.items():
        raw[section].update(values)
    with path.open("w") as stream:
        yaml.dump(raw, stream)


def pipeline_figures(
    root: Path, mirror: Path, params: dict[str, dict], catalog: dict | None = None
) -> dict[str, float]:
    """Time the pipeline in a fresh copy of the project at ``root`` (its own git repo).

    Download + preprocess run from ``mirror`` through ``dvc repro``; train and evaluate
    complete the pipeline; then a no-op ``dvc repro`` is timed three times; last, the train
    command of dvc.yaml runs once more, as a child process, to read its peak memory. That peak
    does not grow with ``train.steps``: the batch schedule (4 bytes per image drawn) is the
    only array that does, so a short run measures it.

    Args:
        root: An empty or missing folder for the copy; ``root/data/processed`` holds the
            splits afterwards.
        mirror: A DATA_MIRROR folder holding ``<dataset>/<file>.gz``.
        params: ``{section: {key: value}}`` merged into the copy's params.yaml.
        catalog: Entries added to the copy's datasets.yaml (generated data).

    Returns:
        ``download_preprocess_seconds``, ``noop_repro_seconds``, ``train_peak_memory_mib``.
    """
    copy_project(root)
    if catalog:
        with (root / "datasets.yaml").open("a") as stream:
            YAML(typ="safe", pure=True).dump(catalog, stream)
    update_params(root / "params.yaml", params)
    env = {
        **os.environ,
        # dvc.yaml says `python`: the interpreter running this benchmark.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DATA_MIRROR": str(mirror.resolve()),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    }
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "b"]):
        timed(command, root, env)
    download_preprocess = timed(["dvc", "repro", "preprocess"], root, env)
    timed(["dvc", "repro"], root, env)
    noop = statistics.median(timed(["dvc", "repro"], root, env) for _ in range(3))
    # The stage's own command line; `python` resolves through PATH as under DVC.
    train_command = shlex.split(read_yaml(root / "dvc.yaml")["stages"]["train"]["cmd"])
    memory = peak_memory_mib(train_command, root, env)
    return {
        "download_preprocess_seconds": round(download_preprocess, 2),
        "noop_repro_seconds": round(noop, 2),
        "train_peak_memory_mib": round(memory, 1),
    }


def throughput_figures(
    params: TrainParams,
    train_split: Split,
    inference_split: Split,
    eval_batch_size: int,
    steps: int,
    repeats: int,
) -> dict[str, dict]:
    """Training and inference images/s of each contender (``summarise``).

    Inference runs at the evaluate stage's batch size on ``inference_split``; the validation
    split serves, as only the evaluate stage reads the test set.
    """
    training = round_rates(
        {
            "train_stage": project_trainer(params, train_split),
            "keras_fit": keras_fit_trainer(params, train_split),
            "tf1_feed_dict": tf1_trainer(params, train_split),
            "gradients_only": gradients_only_trainer(params, train_split),
        },
        steps,
        repeats,
        params.batch_size,
    )
    model = build_model(params)  # untrained weights run as fast as trained ones
    inference = round_rates(
        {
            "evaluate_stage": project_predictor(model, inference_split.x, eval_batch_size),
            "tf1_feed_dict": tf1_predictor(params, inference_split.x, eval_batch_size),
        },
        1,  # one pass over the split per round
        repeats,
        len(inference_split.x),
    )
    return {
        "train": summarise(training, "train_stage"),
        "inference": summarise(inference, "evaluate_stage"),
    }


def format_table(results: dict) -> str:
    """The figures of ``results`` as an aligned text table."""
    load = results["load_average"]
    lines = [
        f"data: {results['data']}; batch {results['batch_size']}; 1-minute load average "
        f"{load['before'][0]:.2f} before, {load['after'][0]:.2f} after",
        f"{'':<27}{'median images/s':>16}{'project / it':>14}   rounds",
    ]
    for kind, project in [("train", "train_stage"), ("inference", "evaluate_stage")]:
        figures = results[kind]
        for name, rate in figures["images_per_second"].items():
            ratio = figures[f"{project}_over"].get(name)
            ratio_text = f"{ratio:.2f}x" if ratio else ""
            rounds = " ".join(f"{value:,.0f}" for value in figures["rounds"][name])
            lines.append(f"{kind:<10} {name:<16}{rate:>16,.0f}{ratio_text:>14}   {rounds}")
    labels = {
        "download_preprocess_seconds": ("download + preprocess (dvc repro, local mirror)", "s"),
        "noop_repro_seconds": ("no-op dvc repro (median of 3)", "s"),
        "train_peak_memory_mib": (
            f"train stage peak memory ({results['memory_run_steps']} steps)",
            "MiB",
        ),
    }
    for key, (label, unit) in labels.items():
        lines.append(f"{label:<50}{results['pipeline'][key]:>10,.2f} {unit}")
    limit = results["arithmetic_limit"]
    lines.append(
        f"arithmetic limit: {limit['matmul_gflops']:,.0f} GFLOP/s of matmul / "
        f"{limit['training_mflop_per_image']:.2f} MFLOP per training image = "
        f"{limit['images_per_second']:,.0f} images/s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run every benchmark, write ``--out`` and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "metrics" / "bench.json")
    parser.add_argument(
        "--mirror",
        default=os.environ.get("DATA_MIRROR"),
        help="folder holding fashion-mnist/*.gz (default: $DATA_MIRROR); "
        "without it, generated images of the same shape",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300, help="training steps per round")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per contender")
    parser.add_argument(
        "--memory-steps",
        type=int,
        default=500,
        help="steps of the train run whose peak memory is read",
    )
    args = parser.parse_args(argv)
    params = load_params(args.params, sections=("train", "evaluate"))
    train_params = dataclasses.replace(params.train, batch_size=args.batch_size)
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        work = Path(work)
        mirror = Path(args.mirror) if args.mirror else work / "mirror"
        if (mirror / "fashion-mnist" / TRAIN_IMAGES).is_file():
            dataset, entry, data = "fashion-mnist", None, f"Fashion-MNIST from {mirror}"
        else:
            dataset, data = "generated", "generated (random images, Fashion-MNIST's shape)"
            entry = generated_mirror(mirror / dataset, 60_000, 10_000)
        print(f"pipeline in a copy of the project ({data}) ...", flush=True)
        copy_params = {
            "data": {"dataset": dataset},
            "train": {"steps": args.memory_steps, "eval_every": args.memory_steps},
        }
        catalog = {dataset: entry} if entry else None
        pipeline = pipeline_figures(work / "project", mirror, copy_params, catalog)
        processed = work / "project" / "data" / "processed"
        train_split = load_split(processed / "train.npz")
        validation_split = load_split(processed / "validation.npz")

    print(f"throughput: {args.repeats} rounds of {args.steps} steps of {args.batch_size} ...")
    results = {
        "data": data,
        "batch_size": args.batch_size,
        "steps_per_round": args.steps,
        "repeats": args.repeats,
        "memory_run_steps": args.memory_steps,
        "cpus": os.cpu_count(),
        "tensorflow": tf.__version__,
        **throughput_figures(
            train_params,
            train_split,
            validation_split,
            params.evaluate.batch_size,
            args.steps,
            args.repeats,
        ),
        "pipeline": pipeline,
        "arithmetic_limit": arithmetic_limit(train_params),
    }
    load_after = os.getloadavg()
    results["load_average"] = {
        "before": [round(value, 2) for value in load_before],
        "after": [round(value, 2) for value in load_after],
    }
    write_json(args.out, results)
    print(format_table(results))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
