"""Datasets and input listing shared by the bundles."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from monai.data import Dataset, MetaTensor, load_decathlon_datalist

__all__ = ["list_inputs", "load_datalist", "positive_class_weights", "GuardedDataset"]

logger = logging.getLogger(__name__)


def load_datalist(datalist_file: str | os.PathLike, key: str, base_dir: str | os.PathLike | None = None) -> list[dict]:
    """Read list ``key`` of a decathlon-style datalist JSON, with paths resolved against ``base_dir``.

    Raises:
        FileNotFoundError: the datalist file does not exist.
        ValueError: the list is missing or empty.
    """
    datalist_file = Path(datalist_file)
    if not datalist_file.is_file():
        raise FileNotFoundError(f"datalist not found: {datalist_file}")
    with open(datalist_file) as f:
        content = json.load(f)
    if not content.get(key):
        raise ValueError(f"datalist {datalist_file} has no entries under '{key}' (keys: {sorted(content)})")
    return load_decathlon_datalist(str(datalist_file), data_list_key=key, base_dir=str(base_dir or datalist_file.parent))


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
        FileNotFoundError: ``source`` does not exist.
        ValueError: nothing to process.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"input not found: {source}")
    if source.is_file() and source.suffix.lower() == ".json":
        return load_datalist(source, datalist_key)
    if source.is_file():
        return [{key: str(source)}]
    suffixes = tuple(e.lower() for e in extensions)
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
    if not files:
        raise ValueError(f"no input files ending in {list(suffixes)} under {source}")
    return [{key: str(p)} for p in files]


class GuardedDataset(Dataset):
    """A :class:`monai.data.Dataset` for inference that survives bad inputs.

    An item whose transform fails is replaced by ``placeholder`` (same keys and shapes as a good item, so batches
    still collate) and flagged: every item carries ``"source"`` (the value of ``source_key`` before loading) and
    ``"error"`` (``""`` or a message naming the file and the problem). Writers skip flagged items; the run goes on.

    Args:
        data: list of dicts such as ``[{"image": "a.png"}, ...]``.
        transform: the preprocessing.
        placeholder: tensors standing in for a failed item, e.g. ``{"image": torch.zeros(1, 224, 224)}``.
        source_key: key whose original value identifies the input.
    """

    def __init__(
        self,
        data: Sequence[Mapping],
        transform: Callable,
        placeholder: Mapping[str, torch.Tensor],
        source_key: str = "image",
    ) -> None:
        super().__init__(data=data, transform=transform)
        self.placeholder = dict(placeholder)
        self.source_key = source_key

    def _transform(self, index: int) -> dict:
        source = str(self.data[index][self.source_key])
        try:
            item = dict(super()._transform(index))
            for name, expected in self.placeholder.items():
                got = tuple(item[name].shape)
                if got != tuple(expected.shape):
                    raise ValueError(f"{source}: preprocessed '{name}' has shape {got}, expected {tuple(expected.shape)}")
            error = ""
        except Exception as e:  # every failure of one input is reported for that input alone
            cause = e  # MONAI wraps transform errors in "applying transform ...": report the error underneath
            while cause.__cause__ is not None and str(cause).startswith("applying transform"):
                cause = cause.__cause__
            message = str(cause) if source in str(cause) else f"{source}: {cause}"
            logger.error("skipping input: %s", message)
            item = {name: MetaTensor(value.clone()) for name, value in self.placeholder.items()}
            error = message
        item["source"] = source
        item["error"] = error
        return item
