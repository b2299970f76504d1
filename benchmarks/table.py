"""The benchmark's figures as an aligned text table."""

from __future__ import annotations


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
            lines.append(f"{kind:<10} {name:<20}{rate:>12,.0f}{ratio_text:>14}   {rounds}")
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
    for precision, limit in results["arithmetic_limit"].items():
        lines.append(
            f"arithmetic limit, {precision}: {limit['matmul_gflops']:,.0f} GFLOP/s of matmul / "
            f"{limit['training_mflop_per_image']:.2f} MFLOP per training image = "
            f"{limit['images_per_second']:,.0f} images/s"
        )
    if system := results.get("system_metrics"):
        share, rates = system["monitor_cpu_share"], system["images_per_s"]
        lines.append(
            f"MLflow system metrics: monitor thread {share['interval_10s']:.3%} of a CPU "
            f"(10 s interval), {share['interval_1s']:.2%} (1 s); train loop on / off "
            f"{rates['on_over_off']:.3f}"
        )
    return "\n".join(lines + experiment_lines(results))


def experiment_lines(results: dict) -> list[str]:
    """The CPU's bfloat16 support, the capped run, start-up, queue and recipe figures."""
    cpu, capped = results["cpu"], results["without_bfloat16_units"]
    flags = ", ".join(cpu["bfloat16_flags"]) or "none"
    rates = capped["images_per_second"]
    lines = [
        f"CPU: {cpu['cpu']}; bfloat16 units: {flags}",
    ]
    if capped.get("bfloat16_refused"):
        bf16 = f"bfloat16 refused: {capped['bfloat16_refused']}"
    else:
        bf16 = (
            f"{rates['train_stage_bf16']:,.0f} bfloat16 "
            f"(float32 / bfloat16 {capped['train_stage_over']['train_stage_bf16']:.2f}x)"
        )
    lines.append(
        f"oneDNN capped at {capped['isa']}: train stage {rates['train_stage']:,.0f} images/s "
        f"float32, {bf16}"
    )
    for name, figures in results["startup"].items():
        lines.append(
            f"start-up of {name:<9}: {figures['import_seconds']:>5.1f} s importing of "
            f"{figures['wall_seconds']:>5.1f} s ({figures['startup_share']:.0%})"
        )
    only = results["evaluate_only"]
    lines.append(
        f"evaluate-only dvc exp run: {only['wall_seconds']:.1f} s, of which "
        f"{only['evaluate_import_seconds']:.1f} s evaluate's imports ({only['startup_share']:.0%})"
    )
    for key in ("queue", "queue_long"):
        queue = results.get(key)
        if queue is None:  # a bench run with --long-queue-steps 0
            continue
        name = f"queue of {queue['steps']:,}-step experiments"
        for jobs in ("jobs_1", "jobs_2"):
            figures = queue[jobs]
            lines.append(
                f"{name}, --jobs {jobs[-1]} (DIGITS_THREADS {figures['digits_threads']}): "
                f"{figures['wall_seconds']:.1f} s, "
                f"{figures['experiments_per_hour']} experiments/hour"
            )
        lines.append(f"{name}: --jobs 2 finishes {queue['jobs_2_speedup']:.2f}x as fast")
    return lines + recipe_lines(results["recipes"])


def recipe_lines(recipes: dict) -> list[str]:
    """The default and the fast recipe: accuracy and time to it."""
    lines = []
    for name, recipe in recipes.items():
        precision = recipe["settings"].get("train.precision", "float32")
        lines.append(
            f"{name} recipe ({precision}): test accuracy {recipe['test_accuracy']:.4f} "
            f"(validation {recipe['val_accuracy']:.4f}) in {recipe['training_seconds']:.1f} s "
            f"of training ({recipe['images_per_second']:,.0f} images/s)"
        )
    return lines


def portability_lines(results: dict) -> list[str]:
    """The train stage against PyTorch eager in each configuration, then the recipes."""
    machine = results["machine"]
    lines = [
        f"CPU: {machine['cpu']} ({machine['instruction_set']}, {machine['cpu_count']} cores); "
        f"bfloat16 {results['bfloat16_slowdown']:.1f}x as slow as float32 here",
        f"{'':<44}{'train stage':>12}{'PyTorch eager':>15}{'stage / PyTorch':>17}",
    ]
    labels = {
        "full": "full instruction set, oneDNN on",
        "avx2": "capped at AVX2, oneDNN on",
        "tf_default": "capped at AVX2, oneDNN off (TF's default)",
    }
    for name, figures in results["portability"].items():
        rates = figures["images_per_second"]
        torch = rates.get("pytorch_eager")
        ratio = f"{rates['train_stage'] / torch:.2f}x" if torch else "no PyTorch"
        torch_text = f"{torch:,.0f}" if torch else "-"
        lines.append(
            f"{labels.get(name, name):<44}{rates['train_stage']:>12,.0f}{torch_text:>15}"
            f"{ratio:>17}"
        )
    return lines + recipe_lines(results["recipes"])
