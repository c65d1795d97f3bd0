"""Eager PyTorch on a few cores: one forward on intra-op threads against one single-threaded forward per core.

The question behind it: ONNX Runtime runs faster end to end as one single-threaded run per core at once
(``OnnxRuntimeNetwork(concurrent_runs=0)``) than as one run on intra-op threads, because intra-op threads wait for
each other after every operator and stall whenever a data-loader worker takes a core. This script measures whether
the same holds for the bundles' eager networks; its finding is why the chest X-ray bundles' ``inference.json`` run
the eager network through :class:`medzoo.inferers.ConcurrentRuns`.

Per bundle, in one run on this CPU, the bundle's network (initial weights, ``torch.inference_mode``) on a random
batch of its input shape, two ways timed alternately (median of ``--rounds`` rounds of ``--iterations`` batches):

- ``intra-op``: one forward of the whole batch with one PyTorch thread per core;
- ``run per core``: :class:`medzoo.inferers.ConcurrentRuns` with a run per core: the batch split in one chunk per
  core, each chunk's forward in its own Python thread with one PyTorch thread, outputs concatenated.

Both are measured on an otherwise idle process and again with ``--busy`` processes spinning on one core each (a
stand-in for data-loader workers reading images). Writes ``<output>.json`` and ``<output>.md``::

    python benchmarks/torch_thread_layouts.py --output docs/torch_thread_layouts
"""

from __future__ import annotations

import argparse
import multiprocessing
import os

import torch

from medzoo.bench.timing import report_stamp, time_per_item
from medzoo.export import example_input
from medzoo.fileio import publish_report
from medzoo.inferers import ConcurrentRuns
from medzoo.zoo import Bundle

DEFAULT_BUNDLES = ("cxr14_densenet121_classification", "cxr14_mobilenetv3_distilled_classification")


def _spin(stop) -> None:
    """Keep one core busy until ``stop`` is set."""
    total = 0
    while not stop.is_set():
        total = (total + sum(range(10_000))) % 1_000_003


def measure(bundle: Bundle, batch_size: int, rounds: int, iterations: int, cores: int) -> dict[str, float]:
    """Median images/s of the two layouts, timed alternately, after one untimed pass of each."""
    network = bundle.network().eval()
    layouts = {"intra-op": network, "run per core": ConcurrentRuns(network, runs=cores)}

    def timed(module: torch.nn.Module):
        def forward(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return module(x)

        return forward

    torch.set_num_threads(cores)
    batches = [example_input(bundle, batch_size)] * iterations
    ms_per_batch = time_per_item({name: timed(module) for name, module in layouts.items()}, batches, rounds)
    return {name: 1000 * batch_size / ms for name, ms in ms_per_batch.items()}


def markdown(report: dict) -> str:
    """The report as a Markdown table: images/s of both layouts per bundle, idle and with ``busy`` cores taken."""
    lines = [
        (
            f"`benchmarks/torch_thread_layouts.py`, {report['measured_at']}, {report['machine']}; batch "
            f"{report['batch_size']}, median of {report['rounds']} alternating rounds of {report['iterations']} "
            f"batches; busy: {report['busy']} process(es) spinning on a core each."
        ),
        "",
        "| bundle | load | intra-op, a thread per core (img/s) | a single-threaded run per core (img/s) | ratio |",
        "|---|---|---|---|---|",
    ]
    for name, loads in report["bundles"].items():
        for load, r in loads.items():
            lines.append(
                f"| {name} | {load} | {r['intra-op']:.1f} | {r['run per core']:.1f} | "
                f"{r['run per core'] / r['intra-op']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", nargs="+", default=list(DEFAULT_BUNDLES))
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--busy", type=int, default=1, help="processes spinning on a core each in the loaded case")
    parser.add_argument("--output", default=None, help="path without suffix for the .json and .md reports")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    report = {
        **report_stamp(),
        "cores": cores,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "iterations": args.iterations,
        "busy": args.busy,
        "bundles": {},
    }
    for name in args.bundles:
        report["bundles"][name] = {}
        for load in ("idle", "busy"):
            stop = multiprocessing.Event()
            count = args.busy if load == "busy" else 0
            spinners = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(count)]
            for spinner in spinners:
                spinner.start()
            try:
                report["bundles"][name][load] = measure(
                    Bundle(name), args.batch_size, args.rounds, args.iterations, cores
                )
            finally:
                stop.set()
                for spinner in spinners:
                    spinner.join()
    publish_report(args.output, report, markdown(report))


if __name__ == "__main__":
    main()
