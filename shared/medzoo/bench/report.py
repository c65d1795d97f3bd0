"""Markdown of :func:`medzoo.bench.driver.benchmark_bundle`'s results, starting with the command line that
reproduces them."""

from __future__ import annotations

import inspect
import json

from .driver import benchmark_bundle

__all__ = ["benchmark_markdown", "option_flags", "python_literal", "thread_layout_text"]


def benchmark_markdown(results: dict) -> str:
    """Markdown tables of :func:`~medzoo.bench.driver.benchmark_bundle`'s results."""
    sample = results["sample_data"]  # "given" or {"sample_data.json": overrides}
    overrides = sample["sample_data.json"] if isinstance(sample, dict) else None
    flags = " --tune" if "tuning" in results else ""
    data = "a data set given to the benchmark" if sample == "given" else "the bundle's sample data"
    if overrides:
        flags += f" --sample_overrides '{python_literal(overrides)}'"
        data += f" with {json.dumps(overrides)}"
    flags += option_flags(results["options"])
    lines = [
        f"`medzoo benchmark {results['bundle']}{flags}`, {results['measured_at']}: {results['machine']}, "
        f"{results['weights']} weights; one run, so compare rows with each other rather than with other machines.",
        f"Data: {data}.",
        "",
        "End-to-end: the bundle's inference.json from files to written outputs, whole run (with the start-up of "
        "the data-loader workers) and steady state (first batch to last); end-to-end / forward compares the "
        f"steady state with the bare network{_input_network_text(results)} at the same batch size, backend and "
        f"thread layout{_rounds_text(results)}. The forward columns use each backend's own default settings.",
        "",
        "| backend | forward b1 (ms) | best forward (img/s, batch) | end-to-end (img/s, batch, inputs) | "
        "steady end-to-end (img/s) | end-to-end / forward | peak memory (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, forward in results["forward"].items():
        e2e = results["inference"].get(name)  # measured end to end: the backends an inference config runs on
        batch = f"b{e2e['batch_size']}, " if e2e and e2e["batch_size"] is not None else ""
        e2e_text = (
            f"{e2e['images_per_s']:.1f} ({batch}{e2e['inputs']}) | {e2e['steady_images_per_s']:.1f}" if e2e else "- | -"
        )
        ratio = "-"
        if e2e and "ratio_to_forward_same_batch" in e2e:  # a sliding-window config has no bare-network counterpart
            spread = sorted(r["ratio"] for r in e2e["rounds"])
            spread_text = f"{spread[0]:.2f}-{spread[-1]:.2f}; " if len(spread) > 1 else ""
            ratio = (
                f"{e2e['ratio_to_forward_same_batch']:.2f} ({spread_text}"
                f"{e2e['forward_same_batch']['images_per_s']:.1f})"
            )
        lines.append(
            f"| {name} | {forward['latency_ms_b1']:.1f} | {forward['best_images_per_s']:.1f} "
            f"(b{forward['best_batch_size']}) | {e2e_text} | {ratio} | {forward['peak_rss_mb']:.0f} |"
        )
    lines += _per_batch_lines(results)
    if "tuning" in results:
        lines += _tuning_lines(results["tuning"])
    if "train" in results:
        t = results["train"]
        lines += [
            "",
            "| training | step (s) | data wait (s) | data wait share |",
            "|---|---|---|---|",
            f"| {t['iterations']} iterations | {t['step_s']:.3f} | {t['data_wait_s']:.4f} | "
            f"{100 * t['data_wait_ratio']:.1f}% |",
        ]
    return "\n".join(lines) + "\n"


def _tuning_lines(tuning: dict) -> list[str]:
    """The tuning grid of :func:`~medzoo.bench.tuning.tune_inference` as a table, the fastest cell marked."""
    defaults = tuning["defaults"]
    layouts = any(k.endswith("_concurrent_runs") for k in defaults)
    lines = [
        "",
        f"End-to-end inference ({tuning['backend']}) by batch size, data-loader workers"
        f"{' and thread layout' if layouts else ''} (defaults: batch {defaults['batch_size']}, "
        f"{defaults['num_workers']} workers{', ' + thread_layout_text(defaults) if layouts else ''}):",
        "",
        f"| batch | workers |{' threads |' if layouts else ''} images/s (whole run) | images/s (steady) | "
        f"peak memory (MB) |",
        "|---|---|---|---|---|" + ("---|" if layouts else ""),
    ]
    for cell in tuning["cells"]:
        mark = " **fastest**" if cell["steady_images_per_s"] == tuning["best"]["steady_images_per_s"] else ""
        layout = f" {thread_layout_text(cell['settings'])} |" if layouts else ""
        lines.append(
            f"| {cell['batch_size']} | {cell['num_workers']} |{layout} {cell['images_per_s']:.1f} | "
            f"{cell['steady_images_per_s']:.1f}{mark} | {cell['peak_rss_mb']:.0f} |"
        )
    if "torch_threads" in tuning:  # measured on torch, when the fastest cell ran one forward at a time on >1 core
        default, one = tuning["torch_threads"]
        lines += [
            "",
            (
                f"PyTorch intra-op threads at the fastest cell: {default['torch_threads']} (PyTorch's default, "
                f"one per core, as in the grid) {default['steady_images_per_s']:.1f} images/s in steady state; "
                f"1 thread {one['steady_images_per_s']:.1f}."
            ),
        ]
    return lines


def option_flags(options: dict) -> str:
    """The command-line flags of the options that differ from the defaults of
    :func:`~medzoo.bench.driver.benchmark_bundle`, e.g. `` --batch_sizes '(2, 4)' --int8 False``."""
    defaults = inspect.signature(benchmark_bundle).parameters
    flags = ""
    for name, value in options.items():
        default = defaults[name].default
        if value == (list(default) if isinstance(default, tuple) else default or {}):  # as benchmark_bundle records it
            continue
        if isinstance(value, list):  # a tuple flag, e.g. --batch_sizes '(2, 4, 8)'
            value = f"'{tuple(value)}'"
        elif isinstance(value, dict):
            value = f"'{python_literal(value)}'"
        flags += f" --{name} {value}"
    return flags


def python_literal(value: object) -> str:
    """``value`` as a Python literal with double-quoted strings, to be pasted inside single quotes on a command line
    (``medzoo benchmark`` reads its dict flags as Python literals: ``None``, not JSON's ``null``)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    return json.dumps(value)


def _per_batch_lines(results: dict) -> list[str]:
    """Where an end-to-end batch's time goes, per backend measured end to end (none for a run of a single batch)."""
    lines = []
    for name, e2e in results["inference"].items():
        split, forward = e2e["per_batch_ms"], e2e.get("forward_same_batch")  # no forward_same_batch: sliding window
        if split is None:
            continue
        upstream = (forward or {}).get("input_network")
        preparation = f"batch preparation with {upstream}" if upstream else "batch preparation"
        bare = (
            f"; the bare network(s) of the ratio alone: {1000 * e2e['batch_size'] / forward['images_per_s']:.1f} ms"
            if forward
            else ""
        )
        lines.append(
            f"- {name}, batch {e2e['batch_size']}: waiting for data {split['data_wait']:.1f} ms, the network "
            f"{split['network']:.1f} ms, the rest of the iteration ({preparation}, handlers, writers) "
            f"{split['rest']:.1f} ms{bare}."
        )
    if not lines:
        return []
    return [
        "",
        "Where an end-to-end batch's time goes (medians per batch in steady state, in the row's round):",
        "",
        *lines,
    ]


def _rounds_text(results: dict) -> str:
    """How the end-to-end / forward column was measured: the median of alternating rounds, or a single round."""
    rounds = max((len(e2e["rounds"]) for e2e in results["inference"].values() if "rounds" in e2e), default=0)
    if rounds > 1:
        return (
            f", median of {rounds} alternating rounds of end-to-end then bare network (in brackets: the range over "
            "the rounds, and the bare network's img/s in the median round, whose end-to-end figures the row shows)"
        )
    return " (the bare network's img/s in brackets)"


def _input_network_text(results: dict) -> str:
    """`` preceded by <the input network> (...)`` when the end-to-end ratios include one, else ``""``."""
    names = {
        e2e["forward_same_batch"]["input_network"]
        for e2e in results["inference"].values()
        if "forward_same_batch" in e2e
    } - {None}
    return (
        f" preceded by {' / '.join(sorted(names))} (the network prepare_batch runs to make the network's input; "
        "the forward columns are the network alone)"
        if names
        else ""
    )


def thread_layout_text(settings: dict) -> str:
    """``onnx_threads`` / ``onnx_concurrent_runs`` or ``torch_concurrent_runs`` of an inference config in words, e.g.
    ``1 run at a time, a thread per core``."""
    if "torch_concurrent_runs" in settings:  # ConcurrentRuns: one PyTorch thread per run when there are several
        runs = settings["torch_concurrent_runs"]
        threads = 0 if runs == 1 else 1
    else:
        runs, threads = settings.get("onnx_concurrent_runs", 1), settings.get("onnx_threads", 0)
    per_run = "a thread per core" if threads == 0 else f"{threads} thread{'s' if threads > 1 else ''}"
    if runs == 1:
        return f"1 run at a time, {per_run}"
    return f"{'a run per core' if runs == 0 else f'{runs} runs'} at once, {per_run} each"
