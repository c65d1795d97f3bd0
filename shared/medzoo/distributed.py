"""Training, evaluation and batch inference under ``torchrun``; evaluation and inference read one shard of the
inputs per rank and write one set of outputs.

The bundles' ``multi_gpu_train.json`` (merged on ``train.json``), ``multi_gpu_evaluate.json`` (merged on
``train.json`` + ``evaluate.json``) and ``multi_gpu_inference.json`` (merged on ``inference.json``) use these pieces:

- :func:`init_distributed` / :func:`finish_distributed`: the process group (NCCL on GPUs, gloo on the CPU), each
  rank on its own GPU, and log records below WARNING from rank 0 only;
- :func:`shard_sampler`: rank ``r`` of ``W`` reads items ``r, r + W, r + 2W, ...`` of the dataset, every item exactly
  once (MONAI's :class:`~monai.data.DistributedSampler` with ``even_divisible=False``: no padding, so no item is
  counted twice);
- :func:`rank_handlers`: the evaluator's handlers for this rank; loggers and writers of whole-run files on rank 0,
  weight loading and per-file writers on every rank;
- :class:`GatheredPredictionCSVWriter`, :class:`GatheredBadInputReport`, :class:`GatheredGradCAMSaver`: the zoo's
  writers of one file for the whole run, with every rank's rows gathered to rank 0 and written there once, in the
  order of the inputs (the order a single process writes them in).

:func:`check_distributed` (run by ``medzoo verify`` and the tests) runs both configs under torchrun and in one
process on the same inputs and weights, and checks that they agree.

Metrics need nothing more: MONAI's cumulative metrics (``MeanDice``, ``HausdorffDistance``, ``ROCAUC``,
:class:`medzoo.metrics.MultiLabelAUROC`) gather every rank's buffers before they aggregate, and ignite's metrics
(``Accuracy``) sum their counts across ranks; both happen in ``compute`` on every rank, so every rank attaches them.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.nn  # noqa: F401  (before any process group exists: see init_distributed)
from ignite.engine import Engine
from monai.data import DistributedSampler

from .data import BadInputReport, GuardedDataset, load_datalist
from .errors import UserValueError, install_excepthook
from .gradcam import GradCAMSaver
from .handlers import LoadWeights, MetricsReport, PredictionCSVWriter
from .workflows import bundle_command, run_bundle_command

__all__ = [
    "GatheredBadInputReport",
    "GatheredGradCAMSaver",
    "GatheredPredictionCSVWriter",
    "check_distributed",
    "finish_distributed",
    "init_distributed",
    "is_main_rank",
    "rank_handlers",
    "shard_sampler",
]


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main_rank() -> bool:
    """True on rank 0, and in a run without a process group."""
    return not _active() or dist.get_rank() == 0


def init_distributed() -> None:
    """Join the process group ``torchrun`` describes (environment ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``...).

    NCCL with each rank on GPU ``LOCAL_RANK`` when CUDA is available, gloo on the CPU otherwise. On ranks other than
    0, log records below WARNING are dropped: progress is logged once, while a warning or error (e.g. a bad input,
    which only the rank reading it sees) is still logged by its rank. A user mistake still ends the rank with one
    line: PyTorch's exception hook, which prefixes the rank to the traceback (through a buffer that
    :func:`medzoo.errors.install_excepthook`'s exit would lose), is wrapped by the zoo's again. Does nothing to a
    group already initialised.

    This module imports ``torch.distributed.nn`` before any group exists. Its functions take ``group=group.WORLD``
    as a default argument, evaluated on import, and ``DistributedDataParallel`` imports it: imported after
    ``init_process_group``, those defaults hold the group for the life of the process, so :func:`finish_distributed`
    cannot free it and gloo's threads still run while the interpreter exits, which now and then aborts a rank
    ("terminate called without an active exception").
    """
    if _active():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    install_excepthook()
    if dist.get_rank() > 0:
        logging.disable(logging.INFO)


def finish_distributed() -> None:
    """Wait for every rank, then leave the process group (nothing without one). Once nothing else holds the group
    (e.g. a ``DistributedDataParallel`` network, freed with the workflow), its backend's threads end."""
    if _active():
        dist.barrier()
        dist.destroy_process_group()


def shard_sampler(dataset: Sequence) -> DistributedSampler:
    """Sampler giving this rank items ``rank, rank + W, ...`` of ``dataset`` in order, each item to one rank only.

    Raises:
        medzoo.errors.UserValueError: fewer items than ranks (a rank would have nothing, and the metrics' gathering
            needs every rank); run with ``--nproc_per_node`` at most the number of inputs.
    """
    world = dist.get_world_size()
    if len(dataset) < world:
        raise UserValueError(
            f"{len(dataset)} input(s) for {world} processes: run torchrun with --nproc_per_node at "
            f"most {len(dataset)}, or without torchrun"
        )
    return DistributedSampler(dataset, even_divisible=False, shuffle=False)


def _rank_zero_only() -> tuple[type, ...]:
    """Handlers whose output is whole-run (logs, metric reports): they run on rank 0 alone."""
    from monai.handlers import StatsHandler, TensorBoardStatsHandler

    from .volume.handlers import MetricsJSON

    return StatsHandler, TensorBoardStatsHandler, MetricsReport, MetricsJSON


#: Handlers every rank runs besides the ``Gathered*`` writers: weight loading (each rank has its own network).
EVERY_RANK = (LoadWeights,)
#: Writers of one whole-run file from the rows of one rank, with the gathering replacement each needs.
NEEDS_GATHERING = {
    PredictionCSVWriter: "medzoo.distributed.GatheredPredictionCSVWriter",
    BadInputReport: "medzoo.distributed.GatheredBadInputReport",
    GradCAMSaver: "medzoo.distributed.GatheredGradCAMSaver",
}


def rank_handlers(handlers: Sequence) -> list:
    """The part of an evaluator's ``handlers`` this rank attaches: all on rank 0; on the others, the ones that load
    weights or write what their rank computed (:data:`EVERY_RANK`, the ``Gathered*`` writers).

    Raises:
        ValueError: a handler that would write one rank's share as the whole run's file (:data:`NEEDS_GATHERING`
            names its replacement), or one this module does not place (a config bug, not a user error).
    """
    gathered = (GatheredPredictionCSVWriter, GatheredBadInputReport, GatheredGradCAMSaver)
    rank_zero = _rank_zero_only()
    keep = []
    for handler in handlers:
        if isinstance(handler, gathered) or isinstance(handler, EVERY_RANK):
            keep.append(handler)
            continue
        replacement = next((r for t, r in NEEDS_GATHERING.items() if isinstance(handler, t)), None)
        if replacement:
            raise ValueError(
                f"{type(handler).__name__} writes only its own rank's rows under torchrun: use {replacement}"
            )
        if not isinstance(handler, rank_zero):
            raise ValueError(
                f"medzoo.distributed does not know whether {type(handler).__name__} runs on every rank or "
                "on rank 0 only: add it to EVERY_RANK or _rank_zero_only()"
            )
        if is_main_rank():
            keep.append(handler)
    return keep


def gather_in_input_order(rows: list[list], engine: Engine) -> list[list] | None:
    """Every rank's ``rows`` (lists whose first entry is the input's ``source``), on rank 0, in the order of the
    inputs in the engine's :class:`~medzoo.data.GuardedDataset` (rows of one input keep their order); ``None`` on the
    other ranks. Without a process group, ``rows`` as they are."""
    if not _active():
        return rows
    parts = [None] * dist.get_world_size() if is_main_rank() else None
    dist.gather_object(rows, parts, dst=0)
    if not is_main_rank():
        return None
    dataset = engine.data_loader.dataset
    if not isinstance(dataset, GuardedDataset):
        raise TypeError(
            f"gathered rows are ordered by a GuardedDataset's inputs, the loader has {type(dataset).__name__}"
        )
    position: dict[str, int] = {}
    for i, item in enumerate(dataset.data):
        position.setdefault(str(item[dataset.source_key]), i)
    every = [row for part in parts for row in part]
    return sorted(every, key=lambda row: position[str(row[0])])


class GatheredPredictionCSVWriter(PredictionCSVWriter):
    """:class:`medzoo.handlers.PredictionCSVWriter` under torchrun: rank 0 writes every rank's predictions and failed
    inputs, in input order, once (same arguments)."""

    def _write(self, engine: Engine) -> None:
        rows, errors = gather_in_input_order(self.rows, engine), gather_in_input_order(self.errors, engine)
        if rows is not None:
            self.rows, self.errors = rows, errors
            super()._write(engine)


class GatheredBadInputReport(BadInputReport):
    """:class:`medzoo.data.BadInputReport` under torchrun: rank 0 writes every rank's failed inputs once."""

    def _write(self, engine: Engine) -> None:
        errors = gather_in_input_order(self.errors, engine)
        if errors is not None:
            self.errors = errors
            super()._write(engine)


class GatheredGradCAMSaver(GradCAMSaver):
    """:class:`medzoo.gradcam.GradCAMSaver` under torchrun: each rank writes the overlays of its inputs, rank 0 the
    index ``gradcam.csv`` of every rank's rows once."""

    def _write_index(self, engine: Engine) -> None:
        rows = gather_in_input_order(self.rows, engine)
        if rows is not None:
            self.rows = rows
            super()._write_index(engine)


#: Config files of the distributed workflows and the single-process configs each is merged on.
EVALUATE_CONFIGS = ("train.json", "evaluate.json", "multi_gpu_evaluate.json")
INFERENCE_CONFIGS = ("inference.json", "multi_gpu_inference.json")


def _numbers(report: object, prefix: str = "") -> dict[str, float | None]:
    """Every number (or null) of a JSON report, by its path of keys."""
    if isinstance(report, dict):
        return {k: v for key, value in report.items() for k, v in _numbers(value, f"{prefix}{key}/").items()}
    return {prefix.rstrip("/"): report} if report is None or isinstance(report, (int, float)) else {}


def compare_metrics(single: Path, multi: Path, tolerance: float = 1e-6) -> list[str]:
    """Differences between two metrics JSON files: keys present in one only, values further apart than
    ``tolerance``, a value defined in one and null/NaN in the other."""
    a, b = _numbers(json.loads(single.read_text())), _numbers(json.loads(multi.read_text()))
    problems = [f"{k}: only in {single if k in a else multi}" for k in sorted(set(a) ^ set(b))]
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        undefined = (x is None or math.isnan(x), y is None or math.isnan(y))
        if undefined[0] != undefined[1] or (not any(undefined) and abs(x - y) > tolerance):
            problems.append(f"{key}: {x} in one process, {y} under torchrun")
    return problems


def _cells_agree(a: str, b: str) -> bool:
    """Two CSV cells agree when equal, or when both are decimals (with a ``.``) at most one unit apart in the last
    place written: a value on a rounding boundary is written either way when batches of other sizes change the last
    bits of the float arithmetic. Integers and text must be equal."""
    if a == b:
        return True
    if "." not in a or "." not in b:
        return False
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    last_place = 10.0 ** -min(len(a.partition(".")[2]), len(b.partition(".")[2]))
    return abs(x - y) <= last_place * (1 + 1e-6)


def _same_csv(a: Path, b: Path) -> bool:
    rows = [list(csv.reader(p.read_text().splitlines())) for p in (a, b)]
    return len(rows[0]) == len(rows[1]) and all(
        len(r) == len(s) and all(map(_cells_agree, r, s)) for r, s in zip(*rows)
    )


def compare_files(single: Path, multi: Path) -> list[str]:
    """Differences between two output folders: files present in one only, files that differ (CSV files cell by cell,
    see :func:`_cells_agree`; other files byte for byte)."""
    files = {folder: {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()} for folder in (single, multi)}
    problems = [
        f"{f}: only in {folder}"
        for folder, other in ((single, multi), (multi, single))
        for f in sorted(files[folder] - files[other])
    ]
    for f in sorted(files[single] & files[multi]):
        a, b = single / f, multi / f
        same = _same_csv(a, b) if f.suffix == ".csv" else a.read_bytes() == b.read_bytes()
        if not same:
            problems.append(f"{f}: differs")
    return problems


def check_distributed(
    bundle,
    dataset_dir: str | os.PathLike,
    ckpt_dir: str | os.PathLike,
    workdir: str | os.PathLike,
    nproc: int = 2,
    **overrides,
) -> dict[str, Path]:
    """Run ``multi_gpu_evaluate.json`` and ``multi_gpu_inference.json`` under torchrun with ``nproc`` processes (at
    most one per test case) and the same workflows in one process, on the test split of ``dataset_dir``'s datalist
    (inference with ``--input`` that datalist) with the weights in ``ckpt_dir``, each with ``quick.json`` and
    ``overrides``; raise unless the metrics agree to 1e-6 and the inference outputs are the same files
    (:func:`compare_files`).

    Returns the four output folders (``single_evaluate``, ``multi_evaluate``, ``single_inference``,
    ``multi_inference`` under ``workdir``).
    """
    workdir, dataset_dir = Path(workdir), Path(dataset_dir)
    datalist = bundle.parser("train.json", dataset_dir=str(dataset_dir)).get_parsed_content("datalist")
    nproc = max(1, min(nproc, len(load_datalist(datalist, "test"))))
    quick = ("quick.json",) if "quick.json" in bundle.configs else ()
    common = {"dataset_dir": dataset_dir, "ckpt_dir": ckpt_dir, **overrides}
    folders = {
        f"{mode}_{workflow}": workdir / f"{mode}_{workflow}"
        for workflow in ("evaluate", "inference")
        for mode in ("single", "multi")
    }
    runs = (("evaluate", EVALUATE_CONFIGS, {}), ("inference", INFERENCE_CONFIGS, {"input": datalist}))
    for workflow, configs, extra in runs:
        for mode, names, processes in (("single", configs[:-1], 0), ("multi", configs, nproc)):
            command = bundle_command(
                bundle, [*names, *quick], processes, **common, **extra, output_dir=folders[f"{mode}_{workflow}"]
            )
            what = f"{workflow} ({f'torchrun, {processes} processes' if processes else 'one process'})"
            # one intra-op thread in the single process as in each torchrun rank: the same float arithmetic in both
            run_bundle_command(bundle, command, what, env={"OMP_NUM_THREADS": "1"})
    problems = compare_metrics(folders["single_evaluate"] / "metrics.json", folders["multi_evaluate"] / "metrics.json")
    problems += compare_files(folders["single_inference"], folders["multi_inference"])
    if problems:
        raise AssertionError(
            f"{bundle.name}: torchrun ({nproc} processes) and one process disagree:\n" + "\n".join(problems)
        )
    return folders
