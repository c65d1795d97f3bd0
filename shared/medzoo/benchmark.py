"""Measure a bundle on this CPU, per backend, and compare backends as ratios taken in one run.

Three measurements, each in its own subprocess (``python -m medzoo.benchmark <kind> ...``) so that its peak resident
memory is its own:

- ``forward`` (:func:`measure`): the bare network; warm-up, then the median of ``runs`` timed passes per batch size;
- ``inference`` (:func:`measure_inference`): the bundle's own ``inference.json`` from files on disk to written
  outputs (reading, preprocessing, batching, network, postprocessing, writing), as images per second;
- ``train`` (:func:`measure_training`): the bundle's ``train.json`` for one epoch, median step time and the median time
  an iteration waits for its batch.

:func:`tune_inference` repeats ``inference`` over a grid of batch sizes, data-loader workers and thread layouts
(eager: ``torch_concurrent_runs``, ONNX Runtime: ``onnx_threads`` / ``onnx_concurrent_runs``); the bundles'
defaults (``batch_size``, ``num_workers`` and those layouts) come from it.

Backends: ``torch`` (eager, a ``.pt`` state dict), ``torchscript`` (``.ts``), ``onnx`` (ONNX Runtime, any ``.onnx``
file including int8 ones).
"""

from __future__ import annotations

import datetime
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .zoo import Bundle

__all__ = ["BACKENDS", "ONNX_OPTION_IDS", "TORCH_OPTION_IDS", "benchmark_bundle", "benchmark_markdown",
           "benchmark_summary", "compare_backends", "evaluate_backend", "in_subprocess", "input_network", "load_backend",
           "machine_description", "markdown_table", "measure", "measure_in_subprocess", "measure_inference",
           "measure_training", "peak_rss_mb", "report_stamp", "thread_layout_text", "thread_layouts", "time_per_item",
           "tune_inference"]

BACKENDS = ("torch", "torchscript", "onnx")


def load_backend(bundle: Bundle, backend: str, model: str | os.PathLike, onnx_options: dict | None = None,
                 torch_options: dict | None = None) -> torch.nn.Module:
    """The bundle's network as a callable ``[B, C, *S] -> output`` for ``backend`` with the weights in ``model``.

    ``onnx_options`` are keyword arguments of :class:`medzoo.export.OnnxRuntimeNetwork` (default: ONNX Runtime's own
    settings, one intra-op thread per core); ``torch_options``, if given, those of
    :class:`medzoo.inferers.ConcurrentRuns` around the eager network (default: the network itself, PyTorch's threads).
    """
    if backend == "torch":
        from .inferers import ConcurrentRuns
        from .weights import load_state_dict

        network = bundle.network()
        network.load_state_dict(load_state_dict(model))
        return ConcurrentRuns(network, **torch_options).eval() if torch_options else network.eval()
    if backend == "torchscript":
        return torch.jit.load(str(model), map_location="cpu").eval()
    if backend == "onnx":
        from .export import OnnxRuntimeNetwork

        return OnnxRuntimeNetwork(model, **(onnx_options or {}))
    raise ValueError(f"unknown backend '{backend}'; choose one of {BACKENDS}")


def input_network(bundle: Bundle, ckpt_dir: str | os.PathLike) -> torch.nn.Module | None:
    """The network a bundle's inference runs on every batch to make its network's input, or None.

    That is the ``input_network`` of ``prepare_batch`` in ``inference.json`` (the MI bundle's frozen motion network,
    :class:`medzoo.cmr.engines.MotionFeatureBatch`), built with the weights in ``ckpt_dir``; it takes
    ``in_channels`` channels at the network's spatial size.
    """
    parser = bundle.parser("inference.json", ckpt_dir=str(ckpt_dir))
    if "prepare_batch" not in parser:
        return None
    return getattr(parser.get_parsed_content("prepare_batch"), "input_network", None)


def measure(bundle: Bundle, backend: str, model: str | os.PathLike, batch_sizes: tuple[int, ...] = (1, 4, 8),
            warmup: int = 2, runs: int = 5, onnx_options: dict | None = None, with_input_network: bool = False,
            torch_options: dict | None = None) -> dict:
    """Median forward latency per batch size, best throughput, and this process's peak resident memory.

    ``onnx_options`` / ``torch_options``: see :func:`load_backend`.

    With ``with_input_network``, the bundle's :func:`input_network` (weights beside ``model``), if it has one, runs
    before the network: the bare networks of its inference.
    """
    from .export import example_input

    network = load_backend(bundle, backend, model, onnx_options, torch_options)
    upstream = input_network(bundle, Path(model).parent) if with_input_network else None
    if upstream is not None:
        network = torch.nn.Sequential(upstream.eval(), network)
    per_batch = {}
    with torch.inference_mode():
        for batch_size in batch_sizes:
            x = example_input(bundle, batch_size=batch_size, num_channels=getattr(upstream, "in_channels", None))
            for _ in range(warmup):
                network(x)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                network(x)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            per_batch[str(batch_size)] = {"latency_ms": 1000 * median, "images_per_s": batch_size / median}
    best = max(per_batch, key=lambda b: per_batch[b]["images_per_s"])
    return {
        "backend": backend,
        "model": str(model),
        "size_bytes": Path(model).stat().st_size,
        "torch_threads": torch.get_num_threads(),
        "onnx_options": onnx_options,
        "torch_options": torch_options,
        "input_network": type(upstream).__name__ if upstream is not None else None,
        "per_batch": per_batch,
        "latency_ms_b1": per_batch["1"]["latency_ms"] if "1" in per_batch else None,
        "best_batch_size": int(best),
        "best_images_per_s": per_batch[best]["images_per_s"],
        "peak_rss_mb": peak_rss_mb(),
    }


def time_per_item(functions: dict[str, Callable[[object], object]], items: Sequence[object], rounds: int) -> dict[str, float]:
    """Median milliseconds per item of each function over ``rounds`` passes over ``items``, the functions taking
    turns within each round (so a slow spell of a shared machine falls on all of them), after one warm-up call each.

    Example::

        time_per_item({"gzip": gzip.decompress, "isal": igzip.decompress}, blobs, rounds=5)  # {"gzip": 1.2, ...}
    """
    if not items:
        raise ValueError("no items to time")
    for function in functions.values():
        function(items[0])
    per_item: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(max(1, rounds)):
        for name, function in functions.items():
            start = time.perf_counter()
            for item in items:
                function(item)
            per_item[name].append(1000 * (time.perf_counter() - start) / len(items))
    return {name: statistics.median(values) for name, values in per_item.items()}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (``VmHWM``; unlike ``ru_maxrss`` it does not include the memory of
    the parent a subprocess was forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _IterationTimer:
    """Engine handler: per iteration, the time spent waiting for the batch and the time spent processing it (from
    ``ITERATION_STARTED`` to the end of the handlers attached before this one, e.g. writers); with ``network``, also
    the time inside that module's forward calls. The first ``skip`` iterations of each run are not counted."""

    def __init__(self, skip: int = 1, network: torch.nn.Module | None = None) -> None:
        self.skip, self.data_wait, self.step, self.network_time, self._marks = skip, [], [], [], {}
        self._network, self._in_network, self._forward_start = network, 0.0, 0.0

    def attach(self, engine) -> None:
        from ignite.engine import Events

        for event in (Events.GET_BATCH_STARTED, Events.GET_BATCH_COMPLETED, Events.ITERATION_STARTED):
            engine.add_event_handler(event, self._mark, event.name)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._complete)
        if self._network is not None:
            self._network.register_forward_pre_hook(self._forward_started)
            self._network.register_forward_hook(self._forward_ended)

    def _forward_started(self, module, args) -> None:
        self._forward_start = time.perf_counter()

    def _forward_ended(self, module, args, output) -> None:
        self._in_network += time.perf_counter() - self._forward_start

    def _mark(self, engine, name: str) -> None:
        self._marks[name] = time.perf_counter()
        if name == "ITERATION_STARTED":
            self._in_network = 0.0

    def _complete(self, engine) -> None:
        if engine.state.iteration > self.skip:
            m = self._marks
            self.data_wait.append(m["GET_BATCH_COMPLETED"] - m["GET_BATCH_STARTED"])
            self.step.append(time.perf_counter() - m["ITERATION_STARTED"])
            self.network_time.append(self._in_network)


def _scratch_weights(bundle: Bundle, folder: Path) -> Path:
    """Initial weights in ``folder``: ``model.pt`` and, beside it, those of any frozen sub-network (the MI bundle's)."""
    from .weights import write_frozen_init_weights, write_init_weights

    write_frozen_init_weights(bundle, ckpt_dir=str(folder))
    return write_init_weights(bundle, folder / "model.pt")


def measure_training(bundle: Bundle, dataset_dir: str | os.PathLike, workdir: str | os.PathLike, **overrides) -> dict:
    """One epoch of ``train.json`` on ``dataset_dir``: median step time, median data wait, and their ratio.

    The first iteration is a warm-up and not counted. ``overrides`` reach the config (e.g. ``num_workers``).
    """
    from monai.bundle import ConfigWorkflow

    from .weights import write_frozen_init_weights

    workdir = Path(workdir)
    settings = {"dataset_dir": str(dataset_dir), "ckpt_dir": str(workdir / "models"), "output_dir": str(workdir / "eval"),
                "max_epochs": 1, "progress_bar": False, "bundle_root": str(bundle.root), **overrides}
    write_frozen_init_weights(bundle, config="train.json", ckpt_dir=settings["ckpt_dir"])
    workflow = ConfigWorkflow(config_file=[str(bundle.config_path("train.json"))], meta_file=str(bundle.metadata_file),
                              logging_file=False, workflow_type="train", **settings)
    workflow.initialize()
    timer = _IterationTimer()
    timer.attach(workflow.parser.get_parsed_content("train#trainer"))
    workflow.run()
    workflow.finalize()
    step, wait = statistics.median(timer.step), statistics.median(timer.data_wait)
    return {"iterations": len(timer.step), "step_s": step, "data_wait_s": wait, "data_wait_ratio": wait / (wait + step),
            "settings": {k: v for k, v in overrides.items()}, "peak_rss_mb": peak_rss_mb()}


def measure_inference(bundle: Bundle, backend: str, dataset_dir: str | os.PathLike, workdir: str | os.PathLike,
                      model: str | os.PathLike | None = None, repeats: int = 2, torch_threads: int | None = None,
                      **overrides) -> dict:
    """The bundle's ``inference.json`` on its sample data (``dataset_dir``), from files to written outputs.

    ``torch`` uses ``model`` (default: deterministic initial weights - speed does not depend on the values);
    ``onnx`` adds the bundle's ``inference_onnx.json`` with ``onnx_path=model``. ``torch_threads`` sets PyTorch's
    intra-op threads of the process (default: PyTorch's own, one per core). The evaluator runs ``repeats``
    times; the first is a warm-up, the fastest of the others is reported: ``images_per_s`` over the whole run, and
    ``steady_images_per_s`` from the first completed batch to the last (reading, preprocessing, network and writing in
    steady state, without the start-up of the data-loader workers and the first batch, ``first_batch_s``, which a
    small sample data set cannot amortise). ``per_batch_ms``: medians per iteration after the first of each run,
    of the time waiting for the batch, inside the evaluator's network, and the rest of the iteration (batch
    preparation, including any input network it runs, the inferer's own work, handlers and writers).
    """
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    workdir = Path(workdir)
    configs = ["inference.json"]
    settings = {"dataset_dir": str(dataset_dir), "output_dir": str(workdir / "out"), "bundle_root": str(bundle.root),
                **overrides}
    if backend == "torch":
        settings["ckpt_path"] = str(model or _scratch_weights(bundle, workdir))
        settings["ckpt_dir"] = str(Path(settings["ckpt_path"]).parent)  # frozen sub-networks' weights lie beside it
    elif backend == "onnx":
        if "inference_onnx.json" not in bundle.configs:
            raise ValueError(f"{bundle.name} has no configs/inference_onnx.json: no ONNX Runtime inference to measure")
        configs.append("inference_onnx.json")
        settings["onnx_path"] = str(model)
    else:
        raise ValueError(f"end-to-end inference is measured for torch and onnx, not '{backend}'")
    workflow = ConfigWorkflow(config_file=[str(bundle.config_path(c)) for c in configs], meta_file=str(bundle.metadata_file),
                              logging_file=False, workflow_type="infer", **settings)
    workflow.initialize()
    count = len(workflow.parser.get_parsed_content("dataset"))
    batch_size = workflow.parser.get_parsed_content("batch_size", default=None)
    completed: list[float] = []  # after the bundle's own handlers (writers) of each iteration
    evaluator = workflow.parser.get_parsed_content("evaluator")
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: completed.append(time.perf_counter()))
    timer = _IterationTimer(network=evaluator.network)
    timer.attach(evaluator)
    runs = []
    for _ in range(max(2, repeats)):
        completed.clear()
        start = time.perf_counter()
        workflow.run()
        total = time.perf_counter() - start
        first_batch = min(batch_size or 1, count)
        steady = (count - first_batch) / (completed[-1] - completed[0]) if len(completed) > 1 else float("nan")
        runs.append({"seconds": total, "images_per_s": count / total, "steady_images_per_s": steady,
                     "first_batch_s": completed[0] - start if completed else float("nan")})
    workflow.finalize()
    best = max(runs[1:], key=lambda r: r["images_per_s"])
    per_batch_ms = None  # a run of a single batch has no iteration after the first
    if timer.step:
        network, step = statistics.median(timer.network_time), statistics.median(timer.step)
        per_batch_ms = {"data_wait": 1000 * statistics.median(timer.data_wait), "network": 1000 * network,
                        "rest": 1000 * (step - network)}
    return {"backend": backend, "inputs": count, **best, "batch_size": batch_size, "per_batch_ms": per_batch_ms,
            "num_workers": workflow.parser.get_parsed_content("num_workers", default=None),
            "onnx_options": _options(workflow.parser, ONNX_OPTION_IDS) if backend == "onnx" else None,
            "torch_options": _options(workflow.parser, TORCH_OPTION_IDS) if backend == "torch" else None,
            "torch_threads": torch.get_num_threads(), "peak_rss_mb": peak_rss_mb()}


#: ``OnnxRuntimeNetwork`` argument -> the config id ``inference_onnx.json`` sets it from.
ONNX_OPTION_IDS = {"num_threads": "onnx_threads", "allow_spinning": "onnx_spinning", "concurrent_runs": "onnx_concurrent_runs"}


#: ``ConcurrentRuns`` argument -> the config id ``inference.json`` sets it from (eager PyTorch).
TORCH_OPTION_IDS = {"runs": "torch_concurrent_runs"}


def _options(parser, option_ids: dict[str, str]) -> dict | None:
    """The backend settings an inference config runs with (those of ``option_ids`` it sets; None if it sets none)."""
    return {arg: parser.get_parsed_content(key) for arg, key in option_ids.items() if key in parser} or None


_KINDS = {"forward": "measure", "inference": "measure_inference", "train": "measure_training"}


def in_subprocess(kind: str, bundle: Bundle, **kwargs) -> dict:
    """Run one measurement (``forward``, ``inference`` or ``train``) in a fresh Python process and return its result.

    The keyword arguments are those of :func:`measure`, :func:`measure_inference` or :func:`measure_training`.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown measurement '{kind}'; choose one of {sorted(_KINDS)}")
    command = [sys.executable, "-m", "medzoo.benchmark", kind, str(bundle.root), json.dumps(kwargs, default=str)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"{bundle.name}: {kind} measurement {kwargs} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_in_subprocess(bundle: Bundle, backend: str, model: str | os.PathLike, batch_sizes: tuple[int, ...] = (1, 4, 8),
                          warmup: int = 2, runs: int = 5, onnx_options: dict | None = None,
                          with_input_network: bool = False, torch_options: dict | None = None) -> dict:
    """:func:`measure` in a fresh Python process (so peak memory is this backend's alone)."""
    return in_subprocess("forward", bundle, backend=backend, model=str(model), batch_sizes=list(batch_sizes),
                         warmup=warmup, runs=runs, onnx_options=onnx_options, with_input_network=with_input_network,
                         torch_options=torch_options)


def thread_layouts(backend: str) -> list[dict]:
    """The two ways of running a backend that tuning compares, as inference config ids: one run at a time with an
    intra-op thread per core, or one single-threaded run per core at the same time (``onnx``: ``inference_onnx.json``'s
    ``onnx_threads`` / ``onnx_concurrent_runs``; ``torch``: ``inference.json``'s ``torch_concurrent_runs``)."""
    if backend == "onnx":
        return [{"onnx_threads": 0, "onnx_concurrent_runs": 1}, {"onnx_threads": 1, "onnx_concurrent_runs": 0}]
    if backend == "torch":
        return [{"torch_concurrent_runs": 1}, {"torch_concurrent_runs": 0}]
    raise ValueError(f"thread layouts are tuned for torch and onnx, not '{backend}'")


def tune_inference(bundle: Bundle, dataset_dir: str | os.PathLike, workdir: str | os.PathLike,
                   batch_sizes: tuple[int, ...] = (1, 2, 4, 8), worker_counts: tuple[int, ...] = (0, 1, 2),
                   backend: str = "torch", model: str | os.PathLike | None = None,
                   layouts: list[dict] | None = None) -> dict:
    """End-to-end inference (:func:`measure_inference`, a fresh process per cell) over a grid of ``batch_size`` and
    data-loader ``num_workers`` and, when the bundle's config sets ``onnx_concurrent_runs`` (``onnx``) or
    ``torch_concurrent_runs`` (``torch``), the thread ``layouts`` (default :func:`thread_layouts`): the measurement
    the bundle's defaults are chosen from.

    Returns every cell, the fastest cell in steady state and the bundle's current defaults. Bundles whose
    ``inference.json`` has no ``batch_size`` (sliding-window volumes) are tuned over the workers only. On ``torch``
    with more than one core, if the fastest cell ran one forward at a time on PyTorch's intra-op threads (one per
    core), it runs once more with one intra-op thread (``torch_threads``).
    """
    onnx = backend == "onnx"
    parser = bundle.parser("inference.json", "inference_onnx.json") if onnx else bundle.parser("inference.json")
    if f"{backend}_concurrent_runs" in parser:
        layouts = layouts or thread_layouts(backend)
    else:
        layouts = [{}]
    keys = ["batch_size", "num_workers", *sorted({k for layout in layouts for k in layout})]
    defaults = {k: parser.get_parsed_content(k) for k in keys}
    cells = []
    for batch_size in batch_sizes if defaults["batch_size"] is not None else (None,):
        for workers in worker_counts:
            for layout in layouts:
                settings = {"num_workers": workers, **layout} | ({"batch_size": batch_size} if batch_size else {})
                name = "_".join(f"{k}{v}" for k, v in sorted(settings.items()))
                cell = in_subprocess("inference", bundle, backend=backend, model=str(model) if model else None,
                                     dataset_dir=str(dataset_dir), workdir=str(Path(workdir) / name), **settings)
                cells.append(cell | {"settings": settings})
    best = max(cells, key=lambda c: c["steady_images_per_s"])
    tuning = {"backend": backend, "defaults": defaults, "cells": cells,
              "best": {**{k: best["settings"].get(k, best.get(k)) for k in keys},
                       **{k: best[k] for k in ("images_per_s", "steady_images_per_s")}}}
    if backend == "torch" and best["torch_threads"] > 1 and best["settings"].get("torch_concurrent_runs", 1) == 1:
        one_thread = in_subprocess("inference", bundle, backend=backend, model=str(model) if model else None,
                                   dataset_dir=str(dataset_dir), workdir=str(Path(workdir) / "torch_threads1"),
                                   torch_threads=1, **best["settings"])
        tuning["torch_threads"] = [{k: c[k] for k in ("torch_threads", "images_per_s", "steady_images_per_s")}
                                   for c in (best, one_thread)]
    return tuning


def evaluate_backend(bundle: Bundle, backend: str, model: str | os.PathLike, dataset_dir: str | os.PathLike,
                     output_dir: str | os.PathLike) -> dict:
    """Run the bundle's own evaluation (``train.json`` + ``evaluate.json``) with the network replaced by ``model``.

    The evaluation's weight-loading handlers are removed (the model file carries the weights) and ``network_def``
    becomes the backend's module. Returns the metrics.json it writes.
    """
    from .workflows import run_configs

    run_configs(bundle, ["train.json", "evaluate.json"], workflow_type="eval", drop_weight_loaders=True,
                network_def=load_backend(bundle, backend, model), dataset_dir=str(dataset_dir),
                output_dir=str(output_dir), num_workers=0)
    return json.loads((Path(output_dir) / "metrics.json").read_text())


def compare_backends(bundle: Bundle, variants: dict[str, tuple[str, str]], reference: str = "fp32_eager",
                     dataset_dir: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None,
                     batch_sizes: tuple[int, ...] = (1, 4, 8), warmup: int = 2, runs: int = 5) -> dict:
    """Measure each ``name -> (backend, model file)`` and express it as ratios to ``variants[reference]``.

    Ratios: ``size`` and ``peak_memory`` (lower is better), ``latency_b1`` (variant / reference: lower is better),
    ``speedup_b1`` and ``throughput`` (higher is better). With ``dataset_dir`` (the bundle's sample data) and
    ``workdir``, each variant is also evaluated and ``metric_delta`` gives its key metric minus the reference's.
    """
    results = {name: measure_in_subprocess(bundle, backend, path, batch_sizes, warmup, runs)
               for name, (backend, path) in variants.items()}
    if dataset_dir is not None:
        for name, (backend, path) in variants.items():
            results[name]["metrics"] = evaluate_backend(bundle, backend, path, dataset_dir, Path(workdir) / name)
    ref = results[reference]
    for r in results.values():
        r["ratios"] = {
            "size": r["size_bytes"] / ref["size_bytes"],
            "latency_b1": r["latency_ms_b1"] / ref["latency_ms_b1"],
            "speedup_b1": ref["latency_ms_b1"] / r["latency_ms_b1"],
            "throughput": r["best_images_per_s"] / ref["best_images_per_s"],
            "peak_memory": r["peak_rss_mb"] / ref["peak_rss_mb"],
        }
        if "metrics" in r:
            r["ratios"]["metric_delta"] = {k: v - ref["metrics"][k] for k, v in r["metrics"].items()
                                           if isinstance(v, float) and isinstance(ref["metrics"].get(k), float)}
    return {"bundle": bundle.name, "reference": reference, "cpu_count": os.cpu_count(), "variants": results}


def markdown_table(comparison: dict) -> str:
    """A Markdown table of :func:`compare_backends`'s ratios."""
    lines = ["| variant | size | latency b1 (ms) | speed-up b1 | best throughput (img/s, batch) | peak memory | metric delta |",
             "|---|---|---|---|---|---|---|"]
    for name, r in comparison["variants"].items():
        ratios = r["ratios"]
        delta = ", ".join(f"{k} {v:+.4f}" for k, v in ratios.get("metric_delta", {}).items()) or "-"
        lines.append(
            f"| {name} | {r['size_bytes'] / 1e6:.1f} MB ({ratios['size']:.2f}x) | {r['latency_ms_b1']:.1f} | "
            f"{ratios['speedup_b1']:.2f}x | {r['best_images_per_s']:.1f} (b{r['best_batch_size']}, {ratios['throughput']:.2f}x) | "
            f"{r['peak_rss_mb']:.0f} MB ({ratios['peak_memory']:.2f}x) | {delta} |"
        )
    return "\n".join(lines) + "\n"


def benchmark_bundle(bundle: Bundle, dataset_dir: str | os.PathLike | None = None, batch_sizes: tuple[int, ...] = (1, 2, 4, 8),
                     runs: int = 5, int8: bool = True, train: bool = True, tune: bool = False,
                     sample_overrides: dict | None = None, train_overrides: dict | None = None,
                     ratio_rounds: int = 3, tune_backend: str | None = None) -> dict:
    """Every measurement of a bundle in one run: forward per backend (eager, ONNX Runtime, int8 ONNX Runtime),
    end-to-end inference per backend, one training epoch; ratios between them. With ``tune``, also
    :func:`tune_inference` over ``batch_sizes`` and 0 / 1 / 2 workers on ``tune_backend`` (``"torch"``: the eager
    ``inference.json``, ``"onnx"``: ``inference_onnx.json``), by default the exact backend with the fastest
    end-to-end inference.

    End-to-end / forward is the median of ``ratio_rounds`` rounds, each an end-to-end run followed by the bare
    network(s) at the run's batch size and settings: on a shared machine, a ratio of two measurements taken minutes
    apart moves with the neighbours' load; alternating them puts both sides of every round under the same load.

    Weights are deterministic initial weights (speed does not depend on their values). ``dataset_dir`` is the sample
    data (generated in a scratch folder with ``sample_data.json`` + ``sample_overrides`` if not given).
    """
    import tempfile

    from .compress import compress_bundle
    from .export import example_input, export_onnx
    from .workflows import run_configs

    exact_backends = ["torch", *(["onnx"] if "inference_onnx.json" in bundle.configs else [])]
    if tune_backend is not None and (not tune or tune_backend not in exact_backends):
        raise ValueError(f"tune_backend needs tune and one of {exact_backends} for {bundle.name}, got "
                         f"tune={tune}, tune_backend={tune_backend!r}")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        weights = _scratch_weights(bundle, scratch / "models")
        given_data = dataset_dir is not None
        if dataset_dir is None:
            dataset_dir = scratch / "data"
            run_configs(bundle, ["sample_data.json"], dataset_dir=str(dataset_dir), **(sample_overrides or {}))
        network = load_backend(bundle, "torch", weights)
        models = {"torch": ("torch", weights),
                  "onnx": ("onnx", export_onnx(network, example_input(bundle, 1), scratch / "models" / "model.onnx"))}
        if int8:
            report = compress_bundle(bundle, "int8_static", weights, dataset_dir=dataset_dir, measure=False,
                                     output=scratch / "models" / "model_int8_static.onnx")
            models["onnx_int8"] = ("onnx", Path(report["output"]))
        results: dict = {"bundle": bundle.name, "machine": machine_description(), "cpu_count": os.cpu_count(),
                         "measured_at": datetime.date.today().isoformat(), "weights": "initial (speed only)",
                         "sample_data": "given" if given_data else {"sample_data.json": sample_overrides or {}},
                         "options": {"batch_sizes": list(batch_sizes), "runs": runs, "int8": int8, "train": train,
                                     "train_overrides": train_overrides or {}, "ratio_rounds": ratio_rounds,
                                     **({"tune_backend": tune_backend} if tune_backend else {})},
                         "inference": {}, "forward": {}}
        for name, (backend, path) in models.items():
            if backend in exact_backends:  # int8 runs through inference_onnx.json too
                results["inference"][name] = _end_to_end_rounds(bundle, backend, path, dataset_dir, scratch / name,
                                                                ratio_rounds, runs)
        # batch 1 always: the latency the index and `select` report
        sizes = {1, *batch_sizes} | {r["batch_size"] for r in results["inference"].values() if r.get("batch_size")}
        for name, (backend, path) in models.items():
            results["forward"][name] = measure_in_subprocess(bundle, backend, path, tuple(sorted(sizes)), runs=runs)
        if train and "train.json" in bundle.configs:  # before the long tuning: a training failure stops the run early
            results["train"] = in_subprocess("train", bundle, dataset_dir=str(dataset_dir), workdir=str(scratch / "train"),
                                             **(train_overrides or {}))
        if tune:  # by default on the exact (fp32) backend with the fastest end-to-end inference
            exact = {k: v for k, v in results["inference"].items() if k in exact_backends}
            backend, path = models[tune_backend or max(exact, key=lambda k: exact[k]["images_per_s"])]
            results["tuning"] = tune_inference(bundle, dataset_dir, scratch / "tune", batch_sizes=tuple(batch_sizes),
                                               backend=backend, model=path)
    return results


def _end_to_end_rounds(bundle: Bundle, backend: str, model: Path, dataset_dir: str | os.PathLike, workdir: Path,
                       rounds: int, runs: int) -> dict:
    """:func:`measure_inference` alternated with the bare network(s) at its batch size and ONNX Runtime settings
    (preceded by the bundle's :func:`input_network`, if any), ``rounds`` times: the round of median ratio (the lower middle one
    for an even count), plus every round's figures. A config without ``batch_size`` (sliding window) has no
    bare-network counterpart: one round, no ratio.
    """
    measured = []
    for k in range(max(1, rounds)):
        e2e = in_subprocess("inference", bundle, backend=backend, model=str(model), dataset_dir=str(dataset_dir),
                            workdir=str(workdir / f"round{k}"))
        batch = e2e["batch_size"]
        if not batch:
            return e2e
        forward = measure_in_subprocess(bundle, backend, model, (batch,), runs=runs, onnx_options=e2e["onnx_options"],
                                        torch_options=e2e["torch_options"], with_input_network=True)
        e2e["forward_same_batch"] = forward["per_batch"][str(batch)] | {"input_network": forward["input_network"]}
        e2e["ratio_to_forward_same_batch"] = e2e["steady_images_per_s"] / e2e["forward_same_batch"]["images_per_s"]
        measured.append(e2e)
    median = sorted(measured, key=lambda r: r["ratio_to_forward_same_batch"])[(len(measured) - 1) // 2]
    return median | {"rounds": [{"steady_images_per_s": r["steady_images_per_s"],
                                 "forward_images_per_s": r["forward_same_batch"]["images_per_s"],
                                 "ratio": r["ratio_to_forward_same_batch"]} for r in measured]}


def machine_description() -> str:
    """What the reports say of the machine they were measured on, e.g. ``x86_64, 2 CPU cores, torch 2.14.1``."""
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"


def report_stamp() -> dict:
    """``measured_at`` (today's date) and ``machine``: the first fields of every measurement report."""
    return {"measured_at": datetime.date.today().isoformat(), "machine": machine_description()}


def benchmark_summary(bundle: Bundle, results: dict) -> dict:
    """The index's ``benchmark`` record: the fastest exact (fp32) backend at batch 1 and its best throughput."""
    exact = {k: v for k, v in results["forward"].items() if k in ("torch", "onnx")}
    fastest = min(exact, key=lambda k: exact[k]["latency_ms_b1"])
    best = exact[fastest]
    return {
        "version": bundle.metadata["version"],
        "backend": fastest,
        "latency_ms_b1": round(best["latency_ms_b1"], 2),
        "throughput_img_s": round(best["best_images_per_s"], 2),
        "peak_memory_mb": round(best["peak_rss_mb"]),
        "size_mb": round(best["size_bytes"] / 1e6, 2),
        "machine": results["machine"],
        "measured_at": results["measured_at"],
    }


def _python_literal(value: object) -> str:
    """``value`` as a Python literal with double-quoted strings, to be pasted inside single quotes on a command line
    (``medzoo benchmark`` reads its dict flags as Python literals: ``None``, not JSON's ``null``)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_python_literal(v) for v in value) + "]"
    return json.dumps(value)


def _option_flags(options: dict) -> str:
    """The command-line flags of the options that differ from :func:`benchmark_bundle`'s defaults."""
    defaults = inspect.signature(benchmark_bundle).parameters
    flags = ""
    for name, value in options.items():
        default = defaults[name].default
        if value == (list(default) if isinstance(default, tuple) else default or {}):  # as benchmark_bundle records it
            continue
        if isinstance(value, list):  # a tuple flag, e.g. --batch_sizes '(2, 4, 8)'
            value = f"'{tuple(value)}'"
        elif isinstance(value, dict):
            value = f"'{_python_literal(value)}'"
        flags += f" --{name} {value}"
    return flags


def benchmark_markdown(results: dict) -> str:
    """Markdown tables of :func:`benchmark_bundle`'s results."""
    sample = results.get("sample_data")  # "given", {"sample_data.json": overrides}, or absent in older reports
    overrides = sample.get("sample_data.json") if isinstance(sample, dict) else None
    flags = " --tune" if "tuning" in results else ""
    data = "a data set given to the benchmark" if sample == "given" else "the bundle's sample data"
    if overrides:
        flags += f" --sample_overrides '{_python_literal(overrides)}'"
        data += f" with {json.dumps(overrides)}"
    flags += _option_flags(results.get("options", {}))  # absent in older reports
    lines = [f"`medzoo benchmark {results['bundle']}{flags}`, {results['measured_at']}: {results['machine']}, "
             f"{results['weights']} weights; one run, so compare rows with each other rather than with other machines.",
             f"Data: {data}.", "",
             "End-to-end: the bundle's inference.json from files to written outputs, whole run (with the start-up of the "
             "data-loader workers) and steady state (first batch to last); end-to-end / forward compares the steady "
             f"state with the bare network{_input_network_text(results)} at the same batch size, backend and thread "
             f"layout{_rounds_text(results)}. The forward columns use each backend's own default settings.",
             "",
             "| backend | forward b1 (ms) | best forward (img/s, batch) | end-to-end (img/s, batch, inputs) | steady end-to-end (img/s) | end-to-end / forward | peak memory (MB) |",
             "|---|---|---|---|---|---|---|"]
    for name, forward in results["forward"].items():
        e2e = results["inference"].get(name)
        batch = f"b{e2e['batch_size']}, " if e2e and e2e["batch_size"] is not None else ""
        e2e_text = (f"{e2e['images_per_s']:.1f} ({batch}{e2e['inputs']}) | {e2e['steady_images_per_s']:.1f}"
                    if e2e else "- | -")
        ratio = "-"
        if e2e and "ratio_to_forward_same_batch" in e2e:
            spread = sorted(r["ratio"] for r in e2e.get("rounds", []))
            spread_text = f"{spread[0]:.2f}-{spread[-1]:.2f}; " if len(spread) > 1 else ""
            ratio = (f"{e2e['ratio_to_forward_same_batch']:.2f} ({spread_text}"
                     f"{e2e['forward_same_batch']['images_per_s']:.1f})")
        lines.append(f"| {name} | {forward['latency_ms_b1']:.1f} | {forward['best_images_per_s']:.1f} "
                     f"(b{forward['best_batch_size']}) | {e2e_text} | {ratio} | {forward['peak_rss_mb']:.0f} |")
    lines += _per_batch_lines(results)
    if "tuning" in results:
        tuning = results["tuning"]
        defaults = tuning["defaults"]
        layouts = any(k.endswith("_concurrent_runs") for k in defaults)
        lines += ["", f"End-to-end inference ({tuning['backend']}) by batch size, data-loader workers"
                  f"{' and thread layout' if layouts else ''} (defaults: batch {defaults['batch_size']}, "
                  f"{defaults['num_workers']} workers{', ' + thread_layout_text(defaults) if layouts else ''}):", "",
                  f"| batch | workers |{' threads |' if layouts else ''} images/s (whole run) | images/s (steady) | "
                  f"peak memory (MB) |", "|---|---|---|---|---|" + ("---|" if layouts else "")]
        for cell in tuning["cells"]:
            mark = " **fastest**" if cell["steady_images_per_s"] == tuning["best"]["steady_images_per_s"] else ""
            layout = f" {thread_layout_text(cell['settings'])} |" if layouts else ""
            lines.append(f"| {cell['batch_size']} | {cell['num_workers']} |{layout} {cell['images_per_s']:.1f} | "
                         f"{cell['steady_images_per_s']:.1f}{mark} | {cell['peak_rss_mb']:.0f} |")
        if "torch_threads" in tuning:  # absent in older reports, for ONNX Runtime and when a run per core was fastest
            default, one = tuning["torch_threads"]
            lines += ["", (f"PyTorch intra-op threads at the fastest cell: {default['torch_threads']} (PyTorch's default, "
                           f"one per core, as in the grid) {default['steady_images_per_s']:.1f} images/s in steady state; "
                           f"1 thread {one['steady_images_per_s']:.1f}.")]
    if "train" in results:
        t = results["train"]
        lines += ["", "| training | step (s) | data wait (s) | data wait share |", "|---|---|---|---|",
                  f"| {t['iterations']} iterations | {t['step_s']:.3f} | {t['data_wait_s']:.4f} | {100 * t['data_wait_ratio']:.1f}% |"]
    return "\n".join(lines) + "\n"


def _per_batch_lines(results: dict) -> list[str]:
    """Where an end-to-end batch's time goes, per backend measured (absent in older reports)."""
    lines = []
    for name, e2e in results["inference"].items():
        split, forward = e2e.get("per_batch_ms"), e2e.get("forward_same_batch")
        if not split:
            continue
        upstream = (forward or {}).get("input_network")
        preparation = f"batch preparation with {upstream}" if upstream else "batch preparation"
        bare = (f"; the bare network(s) of the ratio alone: {1000 * e2e['batch_size'] / forward['images_per_s']:.1f} ms"
                if forward else "")
        lines.append(f"- {name}, batch {e2e['batch_size']}: waiting for data {split['data_wait']:.1f} ms, the network "
                     f"{split['network']:.1f} ms, the rest of the iteration ({preparation}, handlers, writers) "
                     f"{split['rest']:.1f} ms{bare}.")
    if not lines:
        return []
    return ["", "Where an end-to-end batch's time goes (medians per batch in steady state, in the row's round):", "",
            *lines]


def _rounds_text(results: dict) -> str:
    """How the end-to-end / forward column was measured: alternating rounds (newer reports) or one of each."""
    rounds = max((len(e2e.get("rounds", [])) for e2e in results["inference"].values()), default=0)
    if rounds > 1:
        return (f", median of {rounds} alternating rounds of end-to-end then bare network (in brackets: the range over "
                "the rounds, and the bare network's img/s in the median round, whose end-to-end figures the row shows)")
    return " (the bare network's img/s in brackets)"


def _input_network_text(results: dict) -> str:
    """`` preceded by <the input network> (...)`` when the end-to-end ratios include one, else ``""``."""
    names = {e2e.get("forward_same_batch", {}).get("input_network") for e2e in results["inference"].values()} - {None}
    return (f" preceded by {' / '.join(sorted(names))} (the network prepare_batch runs to make the network's input; "
            "the forward columns are the network alone)" if names else "")


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


def _main() -> None:
    """``python -m medzoo.benchmark <forward|inference|train> <bundle> '<json keyword arguments>'``: one JSON line."""
    kind, bundle, kwargs = sys.argv[1], Bundle(sys.argv[2]), json.loads(sys.argv[3])
    if "batch_sizes" in kwargs:
        kwargs["batch_sizes"] = tuple(kwargs["batch_sizes"])
    print(json.dumps(globals()[_KINDS[kind]](bundle, **kwargs)))


if __name__ == "__main__":
    _main()
