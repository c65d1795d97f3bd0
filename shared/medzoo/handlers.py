"""Ignite handlers for the bundles' workflows: weight loading, prediction CSVs, metric reports, atomic checkpoints.

Grad-CAM overlays are :class:`medzoo.gradcam.GradCAMSaver`."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from .data import write_bad_input_report
from .errors import UserFileNotFoundError, missing_weights_hint
from .fileio import atomic_path, atomic_write_text
from .metrics import MultiLabelAUROC
from .weights import WEIGHT_FORMATS, load_network_weights, load_weights, save_weights

__all__ = [
    "LoadWeights",
    "PredictionCSVWriter",
    "MetricsReport",
    "SaveBestModel",
    "TrainingCheckpoint",
    "iteration_items",
]

logger = logging.getLogger(__name__)


def iteration_items(engine: Engine) -> list[tuple[dict, dict]]:
    """``(input item, output item)`` dict pairs, one per item of the engine's current batch.

    Works whether or not the engine decollated the batch: ``engine.state.batch`` / ``engine.state.output`` are either
    lists of per-item dicts, or dicts of batched values (split along the first axis, as many items as the batch's
    ``source`` entries). Handlers use it to write one row or file per input.
    """
    batch, output = engine.state.batch, engine.state.output
    if isinstance(batch, dict):  # not decollated
        size = len(batch["source"])
        batch = [{k: v[i] for k, v in batch.items()} for i in range(size)]
        output = [{k: v[i] for k, v in output.items()} for i in range(size)]
    return list(zip(batch, output))


class LoadWeights:
    """Load a state dict into ``network`` strictly, through :func:`medzoo.weights.load_network_weights`.

    Loading happens when the handler is attached, so a missing file or a checkpoint that does not fit the network
    stops the workflow before any data is read; the network never runs with weights other than those asked for.

    Args:
        path: weights file (``.pt`` state dict, or ``.safetensors``).
        network: the module to fill (a DistributedDataParallel wrapper is unwrapped).
        key: entry of the checkpoint holding the state dict, if nested.
        sha256: expected digest of the file, if known.
    """

    def __init__(
        self, path: str | os.PathLike, network: torch.nn.Module, key: str | None = None, sha256: str | None = None
    ) -> None:
        self.path = Path(path)
        self.network = getattr(network, "module", network)
        self.key = key
        self.sha256 = sha256

    def attach(self, engine: Engine) -> None:
        if not self.path.is_file():
            others = [p.name for p in (self.path.with_suffix(s) for s in WEIGHT_FORMATS.values()) if p.is_file()]
            hint = (
                f"{', '.join(others)} is there: pass it with --ckpt_path" if others else missing_weights_hint(self.path)
            )
            raise UserFileNotFoundError(f"no weights at {self.path}; {hint}")
        load_network_weights(self.network, self.path, key=self.key, sha256=self.sha256)
        logger.info("loaded weights from %s", self.path)


class PredictionCSVWriter:
    """Collect one row per input and write ``output_file`` atomically when the run completes.

    Rows are ``file, <label 1>, ..., <label C>`` with the probabilities of ``output[pred_key]`` (shape ``(C,)`` per
    item). Inputs flagged by :class:`medzoo.data.GuardedDataset` go to ``errors_file`` as ``file, error`` instead,
    and are logged. Nothing is written until the end, so an interrupted run leaves no partial CSV.

    Args:
        output_file: predictions CSV.
        labels: column names of the C outputs.
        errors_file: CSV of failed inputs; defaults to ``errors.csv`` beside ``output_file``. Written only if an input
            failed; a stale one from an earlier run is removed.
        std_key: output entry with a per-label spread of the prediction (shape ``(C,)``, e.g. the standard deviation
            over test-time samples, :mod:`medzoo.uncertainty`); if set, columns ``<label>_std`` follow the labels.
    """

    def __init__(
        self,
        output_file: str | os.PathLike,
        labels: Sequence[str],
        errors_file: str | os.PathLike | None = None,
        pred_key: str = "pred",
        std_key: str | None = None,
    ) -> None:
        self.output_file = Path(output_file)
        self.errors_file = Path(errors_file) if errors_file else self.output_file.with_name("errors.csv")
        self.labels = list(labels)
        self.pred_key = pred_key
        self.std_key = std_key
        self.rows: list[list] = []
        self.errors: list[list[str]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows, self.errors = [], []

    def _collect(self, engine: Engine) -> None:
        for item, out in iteration_items(engine):
            if item["error"]:
                self.errors.append([item["source"], item["error"]])
                continue
            values = []
            for key in (self.pred_key, self.std_key) if self.std_key else (self.pred_key,):
                probs = torch.as_tensor(out[key]).detach().float().cpu().reshape(-1)
                if probs.numel() != len(self.labels):
                    raise ValueError(
                        f"'{key}' for {item['source']} has {probs.numel()} values for {len(self.labels)} labels"
                    )
                values += probs.tolist()
            self.rows.append([item["source"], *(f"{p:.6f}" for p in values)])

    def _write(self, engine: Engine) -> None:
        with atomic_path(self.output_file) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", *self.labels, *(f"{label}_std" for label in self.labels if self.std_key)])
            writer.writerows(self.rows)
        write_bad_input_report(self.errors_file, self.errors)
        logger.info(
            "predicted %d input(s) -> %s; %d failed%s",
            len(self.rows),
            self.output_file,
            len(self.errors),
            f" -> {self.errors_file}" if self.errors else "",
        )


class MetricsReport:
    """Log the per-class AUROC behind a :class:`MultiLabelAUROC` and, optionally, write all metrics as JSON.

    On each completed evaluation, ``engine.state.metrics`` (e.g. the mean AUROC under its key metric name) and
    ``{"per_class_auroc": {label: value}}`` are logged and, if ``output_file`` is set, written there atomically.
    """

    def __init__(self, metric: MultiLabelAUROC, output_file: str | os.PathLike | None = None) -> None:
        self.metric = metric
        self.output_file = Path(output_file) if output_file else None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        report = {
            **{k: float(v) for k, v in engine.state.metrics.items() if isinstance(v, (int, float))},
            "per_class_auroc": {k: (None if math.isnan(v) else round(v, 6)) for k, v in self.metric.per_class.items()},
            "num_samples": len(engine.data_loader.dataset) if hasattr(engine.data_loader, "dataset") else None,
        }
        width = max(map(len, self.metric.per_class), default=0)
        table = "\n".join(
            f"  {k:<{width}}  {v if v is None else f'{v:.4f}'}" for k, v in report["per_class_auroc"].items()
        )
        logger.info("per-class AUROC (epoch %s):\n%s", engine.state.epoch, table)
        if self.output_file is not None:
            atomic_write_text(self.output_file, json.dumps(report, indent=2) + "\n")
            logger.info("metrics written to %s", self.output_file)


def _is_main_process() -> bool:
    return (
        not (torch.distributed.is_available() and torch.distributed.is_initialized())
        or torch.distributed.get_rank() == 0
    )


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (state dict keys without ``module.``)."""
    return getattr(network, "module", network)


class SaveBestModel:
    """Write the network's plain state dict to ``path`` atomically whenever the evaluator's key metric improves.

    The atomic replacement of MONAI's ``CheckpointSaver(save_key_metric=True)``, whose file is written in place (a
    kill during the write leaves a truncated ``model.pt``): the state dict goes to a temporary file that is renamed
    over ``path``. Improvement is read from the evaluator's ``state.best_metric_epoch``, which MONAI updates before
    user handlers run; until the key metric has a best value (e.g. it is NaN), every validation is saved. After a
    resume (:class:`TrainingCheckpoint` restores ``best_metric``) the earlier best model is kept unless beaten.
    Only the main process writes under ``torch.distributed``.

    Args:
        network: the trained network (a DistributedDataParallel wrapper is unwrapped).
        path: output file, e.g. ``models/model.pt``; ``.safetensors`` stores safetensors.
    """

    def __init__(self, network: torch.nn.Module, path: str | os.PathLike) -> None:
        self.network = network
        self.path = Path(path)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        best_epoch = getattr(engine.state, "best_metric_epoch", -1)
        if _is_main_process() and best_epoch in (-1, engine.state.epoch):
            save_weights(_unwrap(self.network).state_dict(), self.path)
            logger.info(
                "saved model (best metric %s at epoch %s) to %s",
                getattr(engine.state, "best_metric", None),
                best_epoch,
                self.path,
            )


class TrainingCheckpoint:
    """Save, and with ``resume`` restore, everything an interrupted training needs to continue.

    Attached to the trainer. At the end of every ``interval``-th epoch (after the other epoch handlers, so attach it
    last: the scheduler has stepped and validation has run) it writes ``path`` atomically (temporary file + rename,
    main process only) with the state dicts of ``save_dict`` (e.g. network, optimizer, lr_scheduler), the trainer's
    state (epoch, iteration) and the evaluator's best metric and its epoch. A SIGKILL at any moment therefore leaves
    the previous complete checkpoint, and a resumed run loses at most the epoch in progress.

    With ``resume=True`` the checkpoint is read through :func:`medzoo.weights.load_weights` (no pickled code runs)
    when the trainer starts and everything is restored, so training continues from the saved epoch up to the
    configured ``max_epochs`` (which may be raised to train longer). Not restored: random number generator states and
    the data order, so a resumed run is not bit-identical to an uninterrupted one.

    Args:
        path: checkpoint file, e.g. ``models/checkpoint.pt``.
        save_dict: objects with ``state_dict`` / ``load_state_dict``, e.g. ``{"network": ..., "optimizer": ...,
            "lr_scheduler": ...}``; a DistributedDataParallel network is unwrapped.
        evaluator: the validation engine whose ``best_metric`` / ``best_metric_epoch`` are kept, if any.
        resume: restore from ``path`` when training starts; a missing file is an error (run without ``resume``).
        interval: save every ``interval`` epochs.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        save_dict: dict,
        evaluator: Engine | None = None,
        resume: bool = False,
        interval: int = 1,
    ) -> None:
        if "trainer" in save_dict:
            raise ValueError("save_dict must not contain 'trainer': the trainer's state is saved by the handler itself")
        self.path = Path(path)
        self.save_dict = {
            name: _unwrap(obj) if isinstance(obj, torch.nn.Module) else obj for name, obj in save_dict.items()
        }
        self.evaluator = evaluator
        self.resume = resume
        self.interval = interval

    def attach(self, engine: Engine) -> None:
        if self.resume:
            if not self.path.is_file():
                raise FileNotFoundError(
                    f"resume requested but there is no checkpoint at {self.path}: run without --resume"
                )
            engine.add_event_handler(Events.STARTED, self.restore)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self.save)

    def state_dict(self, engine: Engine) -> dict:
        """The checkpoint content: tensors and plain containers only, so it loads with ``weights_only=True``."""
        state = {name: obj.state_dict() for name, obj in self.save_dict.items()}
        state["trainer"] = dict(engine.state_dict())
        if self.evaluator is not None:
            best = getattr(self.evaluator.state, "best_metric", -1)
            state["best_metric"] = float(best)
            state["best_metric_epoch"] = int(getattr(self.evaluator.state, "best_metric_epoch", -1))
        return state

    def save(self, engine: Engine) -> None:
        if not _is_main_process():
            return
        state = self.state_dict(engine)
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        logger.info("checkpoint of epoch %d written to %s", engine.state.epoch, self.path)

    def restore(self, engine: Engine) -> None:
        """Load ``path`` into the objects, the trainer and the evaluator; called when the trainer starts."""
        ckpt = load_weights(self.path)
        missing = [k for k in (*self.save_dict, "trainer") if k not in ckpt]
        if missing:
            raise KeyError(
                f"{self.path} is not a training checkpoint of this config: no entries {missing} (has {sorted(ckpt)})"
            )
        for name, obj in self.save_dict.items():
            try:
                obj.load_state_dict(ckpt[name])
            except (RuntimeError, ValueError, KeyError) as e:
                raise ValueError(f"{self.path}: '{name}' does not fit the current config: {e}") from e
        configured_epochs, epoch_length = engine.state.max_epochs, engine.state.epoch_length
        saved = ckpt["trainer"]
        if epoch_length is not None and saved.get("epoch_length") not in (None, epoch_length):
            raise ValueError(
                f"{self.path}: saved with {saved['epoch_length']} iterations per epoch, the data now gives "
                f"{epoch_length}; the training data changed, resume is not meaningful"
            )
        engine.load_state_dict(saved)
        engine.state.max_epochs = configured_epochs
        if self.evaluator is not None and "best_metric" in ckpt:
            self.evaluator.state.best_metric = ckpt["best_metric"]
            self.evaluator.state.best_metric_epoch = ckpt["best_metric_epoch"]
        logger.info(
            "resumed from %s: epoch %d, iteration %d, best metric %s (epoch %s); training to epoch %d",
            self.path,
            engine.state.epoch,
            engine.state.iteration,
            ckpt.get("best_metric"),
            ckpt.get("best_metric_epoch"),
            configured_epochs,
        )
