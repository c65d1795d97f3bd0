"""Timing and memory primitives shared by every measurement: median time per item, peak resident memory, an engine
handler that splits an iteration into data wait / network / the rest, and the machine stamp of a report."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

__all__ = ["IterationTimer", "machine_description", "peak_rss_mb", "report_stamp", "time_per_item"]


def time_per_item(
    functions: dict[str, Callable[[object], object]], items: Sequence[object], rounds: int
) -> dict[str, float]:
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


class IterationTimer:
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


def machine_description() -> str:
    """What the reports say of the machine they were measured on, e.g. ``x86_64, 2 CPU cores, torch 2.14.1``."""
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"


def report_stamp() -> dict:
    """``measured_at`` (today's date) and ``machine``: the first fields of every measurement report."""
    return {"measured_at": datetime.date.today().isoformat(), "machine": machine_description()}
