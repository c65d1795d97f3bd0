"""Medical Segmentation Decathlon (MSD) layout: datalist preparation, labels, datasets and intensity normalisation.

An MSD task folder holds ``dataset.json`` (``labels`` ``{"0": "background", "1": ...}``, ``modality``, ``training``
``[{"image": "./imagesTr/x.nii.gz", "label": ...}]``, ``test`` ``["./imagesTs/y.nii.gz"]``) beside ``imagesTr``,
``labelsTr`` and ``imagesTs``. ``label`` is a label-map path for segmentation, or an integer class for the
volume-level classification tasks written in the same layout (:mod:`medzoo.volume.phantoms`).

:func:`prepare_msd` splits the labelled ``training`` cases into training / validation / test lists (MSD's own test
images have no labels, so held-out metrics need labelled cases set aside); inference runs on ``dataset.json``'s
``test`` list by default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import NormalizeIntensityd, ScaleIntensityRanged

from medzoo.fileio import atomic_write_text

__all__ = [
    "check_labels",
    "intensity_transform",
    "labels_from_metadata",
    "make_dataset",
    "msd_labels",
    "prepare_msd",
]


def _read_dataset_json(dataset_dir: str | os.PathLike) -> tuple[Path, dict]:
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"no dataset.json in {dataset_dir}: expected the MSD/Decathlon layout")
    with open(path) as f:
        return path, json.load(f)


def msd_labels(dataset_dir: str | os.PathLike) -> list[str]:
    """Label names of an MSD task in value order, from ``dataset.json`` ``labels`` (values must be 0..C-1).

    Raises:
        ValueError: no labels, or values that are not the contiguous integers 0..C-1.
    """
    path, content = _read_dataset_json(dataset_dir)
    labels = content.get("labels")
    if not labels:
        raise ValueError(f"{path} has no 'labels'")
    values = sorted(int(k) for k in labels)
    if values != list(range(len(values))):
        raise ValueError(f"{path}: label values must be 0..{len(values) - 1}, got {values}")
    return [labels[str(v)] for v in values]


def labels_from_metadata(meta: Mapping | str | os.PathLike, output: str = "pred") -> list[str]:
    """Class names in channel order from a bundle's metadata (``network_data_format.outputs[output].channel_def``).

    ``meta`` is the metadata or the path of ``metadata.json``. Bundle configs use
    ``"labels": "$medzoo.volume.datasets.labels_from_metadata(@bundle_root + '/configs/metadata.json')"``, so the
    metadata is the single source of the label names (and MONAI Label, which parses a config without ``_meta_``,
    gets the same names).
    """
    if not isinstance(meta, Mapping):
        with open(meta) as f:
            meta = json.load(f)
    channel_def = meta["network_data_format"]["outputs"][output]["channel_def"]
    return [channel_def[str(c)] for c in range(len(channel_def))]


def check_labels(datalist_file: str | os.PathLike, labels: Sequence[str]) -> list[str]:
    """Raise unless the prepared datalist's ``labels`` equal the bundle's ``labels`` (same names, same order)."""
    with open(datalist_file) as f:
        found = json.load(f).get("labels")
    if list(found or []) != list(labels):
        raise ValueError(
            f"{datalist_file} has labels {found} but the bundle is configured for {list(labels)}: set the bundle's "
            "channel_def in configs/metadata.json (and its output num_channels) to the data set's labels"
        )
    return list(labels)


def _relative(entry_path: str) -> str:
    return entry_path.removeprefix("./")


def prepare_msd(
    dataset_dir: str | os.PathLike,
    output_file: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict:
    """Split an MSD task's labelled cases into ``training`` / ``validation`` / ``test`` and write the datalist.

    The result is ``{"labels": [names], "training": [...], "validation": [...], "test": [...]}`` with paths relative
    to ``dataset_dir``; every listed file is checked to exist. The split is a deterministic shuffle from ``seed``;
    validation and test get at least one case each when their fraction is positive.

    Raises:
        FileNotFoundError: dataset.json or a listed file is missing (named).
        ValueError: bad labels, or too few labelled cases for the split.
    """
    dataset_dir = Path(dataset_dir)
    path, content = _read_dataset_json(dataset_dir)
    labels = msd_labels(dataset_dir)
    cases = [dict(entry) for entry in content.get("training") or []]
    for entry in cases:
        for key, value in entry.items():
            if isinstance(value, str):
                entry[key] = _relative(value)
                if not (dataset_dir / entry[key]).is_file():
                    raise FileNotFoundError(f"{path} lists {value}, which does not exist under {dataset_dir}")
            elif key == "label" and not 0 <= int(value) < len(labels):
                raise ValueError(f"{path}: {entry['image']} has class {value}, outside 0..{len(labels) - 1}")
    counts = [round(f * len(cases)) if f > 0 else 0 for f in (val_fraction, test_fraction)]
    counts = [max(1, c) if f > 0 else 0 for c, f in zip(counts, (val_fraction, test_fraction))]
    if len(cases) - sum(counts) < 1:
        raise ValueError(
            f"{path} has {len(cases)} labelled cases: too few for validation {counts[0]} + test {counts[1]} + training"
        )
    order = np.random.default_rng(seed).permutation(len(cases))
    shuffled = [cases[i] for i in order]
    datalist = {
        "labels": labels,
        "training": shuffled[counts[0] + counts[1] :],
        "validation": shuffled[: counts[0]],
        "test": shuffled[counts[0] : counts[0] + counts[1]],
    }
    if output_file is not None:
        atomic_write_text(output_file, json.dumps(datalist, indent=1) + "\n")
    return datalist


def make_dataset(
    data: Sequence[Mapping],
    transform: Callable,
    cache: str = "memory",
    cache_dir: str | os.PathLike | None = None,
    cache_rate: float = 1.0,
    num_workers: int = 0,
) -> Dataset:
    """The dataset for a list of volumes, cached as configured.

    Args:
        cache: ``"memory"`` (:class:`monai.data.CacheDataset`: deterministic transforms run once, results in RAM),
            ``"disk"`` (:class:`monai.data.PersistentDataset`: results stored in ``cache_dir``, reused across runs,
            for data sets larger than RAM) or ``"none"`` (:class:`monai.data.Dataset`).
        cache_rate: share of the items cached in memory (``"memory"`` only).
    """
    if cache == "memory":
        return CacheDataset(
            data=data, transform=transform, cache_rate=cache_rate, num_workers=num_workers, progress=False
        )
    if cache == "disk":
        if cache_dir is None:
            raise ValueError("cache='disk' needs a cache_dir")
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        return PersistentDataset(data=data, transform=transform, cache_dir=cache_dir)
    if cache == "none":
        return Dataset(data=data, transform=transform)
    raise ValueError(f"cache must be 'memory', 'disk' or 'none', got {cache!r}")


def intensity_transform(
    modality: str, keys: str | Sequence[str] = "image", hu_window: Sequence[float] = (-175.0, 250.0)
):
    """Intensity normalisation by modality.

    - ``"CT"``: clip to the Hounsfield window ``hu_window = (low, high)`` and scale it to [0, 1];
    - ``"MRI"``: z-score over the non-zero voxels, per channel (background stays 0).
    """
    if modality == "CT":
        low, high = (float(v) for v in hu_window)
        if not low < high:
            raise ValueError(f"hu_window must be (low, high) with low < high, got {hu_window}")
        return ScaleIntensityRanged(keys=keys, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)
    if modality == "MRI":
        return NormalizeIntensityd(keys=keys, nonzero=True, channel_wise=True)
    raise ValueError(f"modality must be 'CT' or 'MRI', got {modality!r}")
