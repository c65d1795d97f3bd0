"""Datasets and input listing shared by the bundles."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from monai.data import Dataset, MetaTensor, load_decathlon_datalist

from .errors import UserFileNotFoundError, UserValueError, missing_input_hint

__all__ = [
    "list_inputs",
    "load_datalist",
    "positive_class_weights",
    "GuardedDataset",
    "BadInputReport",
    "SkipFailed",
    "write_bad_input_report",
]

logger = logging.getLogger(__name__)


def load_datalist(datalist_file: str | os.PathLike, key: str, base_dir: str | os.PathLike | None = None) -> list[dict]:
    """Read list ``key`` of a decathlon-style datalist JSON, with paths resolved against ``base_dir``.

    Raises:
        medzoo.errors.UserFileNotFoundError: the datalist file does not exist.
        medzoo.errors.UserValueError: the file is not JSON, or the list is missing or empty.
    """
    datalist_file = Path(datalist_file)
    if not datalist_file.is_file():
        raise UserFileNotFoundError(f"datalist not found: {datalist_file}; {missing_input_hint(datalist_file)}")
    try:
        with open(datalist_file) as f:
            content = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserValueError(
            f"datalist {datalist_file} is not valid JSON ({e}); pass a datalist JSON, a folder or a file with --input"
        ) from e
    if not isinstance(content, dict) or not content.get(key):
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise UserValueError(
            f"datalist {datalist_file} has no entries under '{key}' (it has: {keys}); add them, or "
            "pass a folder or a file with --input"
        )
    return load_decathlon_datalist(
        str(datalist_file), data_list_key=key, base_dir=str(base_dir or datalist_file.parent)
    )


def positive_class_weights(
    datalist_file: str | os.PathLike, key: str = "training", ignore_value: float = -1.0, max_weight: float = 100.0
) -> list[float]:
    """Per-class ``negatives / positives`` over the known multi-label targets of list ``key``, for ``pos_weight``.

    A class without positives gets ``max_weight``; every weight is clipped to ``max_weight``.

    Example (override of a chest X-ray train config)::

        --pos_weight '$medzoo.data.positive_class_weights(@datalist)'
    """
    labels = torch.tensor([item["label"] for item in load_datalist(datalist_file, key)], dtype=torch.float)
    known = labels != ignore_value
    positives = ((labels == 1) & known).sum(0).float()
    negatives = ((labels == 0) & known).sum(0).float()
    weights = torch.where(positives > 0, negatives / positives.clamp(min=1), torch.full_like(positives, max_weight))
    return weights.clamp(max=max_weight).tolist()


def list_inputs(
    source: str | os.PathLike, extensions: Sequence[str], key: str = "image", datalist_key: str = "test"
) -> list[dict]:
    """Inputs for an inference run: ``[{key: path}, ...]`` sorted by path.

    Args:
        source: a folder (searched recursively for files ending in ``extensions``, any case), a single file, or a
            datalist JSON whose ``datalist_key`` list is used.
        extensions: file endings to pick up in a folder, e.g. ``(".png", ".jpg")``.

    Raises:
        medzoo.errors.UserFileNotFoundError: ``source`` does not exist (the message says how to make the bundle's
            sample data when ``source`` is its default, inside the bundle folder).
        medzoo.errors.UserValueError: nothing to process.
    """
    source = Path(source)
    if not source.exists():
        raise UserFileNotFoundError(f"input not found: {source}; {missing_input_hint(source)}")
    if source.is_file() and source.suffix.lower() == ".json":
        return load_datalist(source, datalist_key)
    if source.is_file():
        return [{key: str(source)}]
    suffixes = tuple(e.lower() for e in extensions)
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
    if not files:
        raise UserValueError(
            f"no input files ending in {', '.join(suffixes)} under {source}; put the inputs there, or "
            "pass another folder, a file or a datalist JSON with --input"
        )
    return [{key: str(p)} for p in files]


class GuardedDataset(Dataset):
    """A :class:`monai.data.Dataset` for inference that survives bad inputs.

    An item whose transform fails is replaced by its datalist entry with ``placeholder`` over it (the tensors a good
    item has, of the same shapes, so batches still collate) and flagged: every item carries ``"source"`` (the value of ``source_key`` before loading) and
    ``"error"`` (``""`` or a message naming the file and the problem). Writers skip flagged items, a
    :class:`BadInputReport` (or the bundle's prediction writer) lists them in ``errors.csv``; the run goes on.

    Args:
        data: list of dicts such as ``[{"image": "a.png"}, ...]``.
        transform: the preprocessing.
        placeholder: tensors standing in for a failed item, e.g. ``{"image": torch.zeros(1, 224, 224)}``.
        source_key: key whose original value identifies the input.
        fixed_shapes: every good item must have the placeholder's shapes (an item that does not is a failed item);
            False for inputs of their own sizes (e.g. whole volumes for a sliding-window inferer, batch size 1), where
            the placeholder only needs to pass through the network.
    """

    def __init__(
        self,
        data: Sequence[Mapping],
        transform: Callable,
        placeholder: Mapping[str, torch.Tensor],
        source_key: str = "image",
        fixed_shapes: bool = True,
    ) -> None:
        super().__init__(data=data, transform=transform)
        self.placeholder = dict(placeholder)
        self.source_key = source_key
        self.fixed_shapes = fixed_shapes

    def _transform(self, index: int) -> dict:
        source = str(self.data[index][self.source_key])
        try:
            item = dict(super()._transform(index))
            for name, expected in self.placeholder.items():
                got = tuple(item[name].shape)
                if self.fixed_shapes and got != tuple(expected.shape):
                    raise ValueError(
                        f"{source}: preprocessed '{name}' has shape {got}, expected {tuple(expected.shape)}"
                    )
            error = ""
        except Exception as e:  # every failure of one input is reported for that input alone
            cause = e  # MONAI wraps transform errors in "applying transform ...": report the error underneath
            while cause.__cause__ is not None and str(cause).startswith("applying transform"):
                cause = cause.__cause__
            message = str(cause) if source in str(cause) else f"{source}: {cause}"
            logger.error("skipping input: %s", message)
            # the datalist's own entries (e.g. a case id), so that the item collates with good ones
            item = {**self.data[index], **{name: MetaTensor(value.clone()) for name, value in self.placeholder.items()}}
            error = message
        item["source"] = source
        item["error"] = error
        return item


class SkipFailed:
    """Apply ``transform`` to the items :class:`GuardedDataset` read, and pass its flagged items (non-empty
    ``"error"``) through unchanged.

    For postprocessing that cannot run on a placeholder, e.g. ``Invertd`` (it needs the transforms the input went
    through) and ``SaveImaged`` (it would write a file for a failed input). In an inference config::

        "evaluator": {..., "postprocessing": {"_target_": "medzoo.data.SkipFailed", "transform": "@postprocessing"}}
    """

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, data: Mapping) -> Mapping:
        return data if data.get("error") else self.transform(data)


def write_bad_input_report(path: str | os.PathLike, errors: Sequence[Sequence[str]]) -> Path:
    """Write the inputs a run could not use as CSV ``file, error`` to ``path`` atomically; with no ``errors``, remove
    a stale report of an earlier run instead. Returns ``path``."""
    import csv

    from .fileio import atomic_path

    path = Path(path)
    if errors:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([["file", "error"], *errors])
    elif path.exists():
        path.unlink()
    return path


class BadInputReport:
    """Ignite handler: collect the items :class:`GuardedDataset` flagged during a run and write them with
    :func:`write_bad_input_report` when it completes (``errors.csv``: ``file, error``, only if an input failed).

    For inference configs whose writers do not list failed inputs themselves (image writers)::

        {"_target_": "medzoo.data.BadInputReport", "output_file": "$@output_dir + '/errors.csv'"}
    """

    def __init__(self, output_file: str | os.PathLike) -> None:
        self.output_file = Path(output_file)
        self.errors: list[list[str]] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine) -> None:
        self.errors = []

    def _collect(self, engine) -> None:
        batch = engine.state.batch
        items = (
            zip(batch["source"], batch["error"])
            if isinstance(batch, dict)
            else ((b["source"], b["error"]) for b in batch)
        )
        self.errors.extend([str(source), str(error)] for source, error in items if error)

    def _write(self, engine) -> None:
        write_bad_input_report(self.output_file, self.errors)
        if self.errors:
            logger.warning("%d input(s) could not be used, listed in %s", len(self.errors), self.output_file)
