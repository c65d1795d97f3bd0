"""The three measurements of a bundle on this CPU, each meant to run in a process of its own (see
:mod:`medzoo.bench.runner`) so that its peak resident memory is its own:

- ``forward`` (:func:`measure`): the bare network; warm-up, then the median of ``runs`` timed passes per batch size;
- ``inference`` (:func:`measure_inference`): the bundle's own ``inference.json`` from files on disk to written
  outputs (reading, preprocessing, batching, network, postprocessing, writing), as images per second;
- ``train`` (:func:`measure_training`): the bundle's ``train.json`` for one epoch, median step time and the median time
  an iteration waits for its batch.

Backends (:data:`BACKENDS`): ``torch`` (eager, a ``.pt`` state dict), ``torchscript`` (``.ts``), ``onnx`` (ONNX
Runtime, any ``.onnx`` file including int8 ones).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch

from ..zoo import Bundle
from .timing import IterationTimer, peak_rss_mb

__all__ = [
    "BACKENDS",
    "ONNX_OPTION_IDS",
    "TORCH_OPTION_IDS",
    "input_network",
    "load_backend",
    "measure",
    "measure_inference",
    "measure_training",
    "scratch_weights",
]


BACKENDS = ("torch", "torchscript", "onnx")


#: ``OnnxRuntimeNetwork`` argument -> the config id ``inference_onnx.json`` sets it from.
ONNX_OPTION_IDS = {
    "num_threads": "onnx_threads",
    "allow_spinning": "onnx_spinning",
    "concurrent_runs": "onnx_concurrent_runs",
}


#: ``ConcurrentRuns`` argument -> the config id ``inference.json`` sets it from (eager PyTorch).
TORCH_OPTION_IDS = {"runs": "torch_concurrent_runs"}


def load_backend(
    bundle: Bundle,
    backend: str,
    model: str | os.PathLike,
    onnx_options: dict | None = None,
    torch_options: dict | None = None,
) -> torch.nn.Module:
    """The bundle's network as a callable ``[B, C, *S] -> output`` for ``backend`` with the weights in ``model``.

    ``onnx_options`` are keyword arguments of :class:`medzoo.export.OnnxRuntimeNetwork` (default: ONNX Runtime's own
    settings, one intra-op thread per core); ``torch_options``, if given, those of
    :class:`medzoo.inferers.ConcurrentRuns` around the eager network (default: the network itself, PyTorch's threads).
    """
    if backend == "torch":
        from ..inferers import ConcurrentRuns
        from ..weights import load_state_dict

        network = bundle.network()
        network.load_state_dict(load_state_dict(model))
        return ConcurrentRuns(network, **torch_options).eval() if torch_options else network.eval()
    if backend == "torchscript":
        return torch.jit.load(str(model), map_location="cpu").eval()
    if backend == "onnx":
        from ..export import OnnxRuntimeNetwork

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


def scratch_weights(bundle: Bundle, folder: Path) -> Path:
    """Initial weights in ``folder``: ``model.pt`` and, beside it, those of any frozen sub-network (the MI bundle's)."""
    from ..weights import write_frozen_init_weights, write_init_weights

    write_frozen_init_weights(bundle, ckpt_dir=str(folder))
    return write_init_weights(bundle, folder / "model.pt")


def measure(
    bundle: Bundle,
    backend: str,
    model: str | os.PathLike,
    batch_sizes: tuple[int, ...] = (1, 4, 8),
    warmup: int = 2,
    runs: int = 5,
    onnx_options: dict | None = None,
    with_input_network: bool = False,
    torch_options: dict | None = None,
) -> dict:
    """Median forward latency per batch size, best throughput, and this process's peak resident memory.

    ``onnx_options`` / ``torch_options``: see :func:`load_backend`.

    With ``with_input_network``, the bundle's :func:`input_network` (weights beside ``model``), if it has one, runs
    before the network: the bare networks of its inference.
    """
    from ..export import example_input

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


def measure_training(bundle: Bundle, dataset_dir: str | os.PathLike, workdir: str | os.PathLike, **overrides) -> dict:
    """One epoch of ``train.json`` on ``dataset_dir``: median step time, median data wait, and their ratio.

    The first iteration is a warm-up and not counted. ``overrides`` reach the config (e.g. ``num_workers``).
    """
    from monai.bundle import ConfigWorkflow

    from ..weights import write_frozen_init_weights

    workdir = Path(workdir)
    settings = {
        "dataset_dir": str(dataset_dir),
        "ckpt_dir": str(workdir / "models"),
        "output_dir": str(workdir / "eval"),
        "max_epochs": 1,
        "progress_bar": False,
        "bundle_root": str(bundle.root),
        **overrides,
    }
    write_frozen_init_weights(bundle, config="train.json", ckpt_dir=settings["ckpt_dir"])
    workflow = ConfigWorkflow(
        config_file=[str(bundle.config_path("train.json"))],
        meta_file=str(bundle.metadata_file),
        logging_file=False,
        workflow_type="train",
        **settings,
    )
    workflow.initialize()
    timer = IterationTimer()
    timer.attach(workflow.parser.get_parsed_content("train#trainer"))
    workflow.run()
    workflow.finalize()
    step, wait = statistics.median(timer.step), statistics.median(timer.data_wait)
    return {
        "iterations": len(timer.step),
        "step_s": step,
        "data_wait_s": wait,
        "data_wait_ratio": wait / (wait + step),
        "settings": {k: v for k, v in overrides.items()},
        "peak_rss_mb": peak_rss_mb(),
    }


def measure_inference(
    bundle: Bundle,
    backend: str,
    dataset_dir: str | os.PathLike,
    workdir: str | os.PathLike,
    model: str | os.PathLike | None = None,
    repeats: int = 2,
    torch_threads: int | None = None,
    **overrides,
) -> dict:
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
    settings = {
        "dataset_dir": str(dataset_dir),
        "output_dir": str(workdir / "out"),
        "bundle_root": str(bundle.root),
        **overrides,
    }
    if backend == "torch":
        settings["ckpt_path"] = str(model or scratch_weights(bundle, workdir))
        settings["ckpt_dir"] = str(Path(settings["ckpt_path"]).parent)  # frozen sub-networks' weights lie beside it
    elif backend == "onnx":
        if "inference_onnx.json" not in bundle.configs:
            raise ValueError(f"{bundle.name} has no configs/inference_onnx.json: no ONNX Runtime inference to measure")
        configs.append("inference_onnx.json")
        settings["onnx_path"] = str(model)
    else:
        raise ValueError(f"end-to-end inference is measured for torch and onnx, not '{backend}'")
    workflow = ConfigWorkflow(
        config_file=[str(bundle.config_path(c)) for c in configs],
        meta_file=str(bundle.metadata_file),
        logging_file=False,
        workflow_type="infer",
        **settings,
    )
    workflow.initialize()
    count = len(workflow.parser.get_parsed_content("dataset"))
    batch_size = workflow.parser.get_parsed_content("batch_size", default=None)
    completed: list[float] = []  # after the bundle's own handlers (writers) of each iteration
    evaluator = workflow.parser.get_parsed_content("evaluator")
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: completed.append(time.perf_counter()))
    timer = IterationTimer(network=evaluator.network)
    timer.attach(evaluator)
    runs = []
    for _ in range(max(2, repeats)):
        completed.clear()
        start = time.perf_counter()
        workflow.run()
        total = time.perf_counter() - start
        first_batch = min(batch_size or 1, count)
        steady = (count - first_batch) / (completed[-1] - completed[0]) if len(completed) > 1 else float("nan")
        runs.append(
            {
                "seconds": total,
                "images_per_s": count / total,
                "steady_images_per_s": steady,
                "first_batch_s": completed[0] - start if completed else float("nan"),
            }
        )
    workflow.finalize()
    best = max(runs[1:], key=lambda r: r["images_per_s"])
    per_batch_ms = None  # a run of a single batch has no iteration after the first
    if timer.step:
        network, step = statistics.median(timer.network_time), statistics.median(timer.step)
        per_batch_ms = {
            "data_wait": 1000 * statistics.median(timer.data_wait),
            "network": 1000 * network,
            "rest": 1000 * (step - network),
        }
    return {
        "backend": backend,
        "inputs": count,
        **best,
        "batch_size": batch_size,
        "per_batch_ms": per_batch_ms,
        "num_workers": workflow.parser.get_parsed_content("num_workers", default=None),
        "onnx_options": _options(workflow.parser, ONNX_OPTION_IDS) if backend == "onnx" else None,
        "torch_options": _options(workflow.parser, TORCH_OPTION_IDS) if backend == "torch" else None,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": peak_rss_mb(),
    }


def _options(parser, option_ids: dict[str, str]) -> dict | None:
    """The backend settings an inference config runs with (those of ``option_ids`` it sets; None if it sets none)."""
    return {arg: parser.get_parsed_content(key) for arg, key in option_ids.items() if key in parser} or None
