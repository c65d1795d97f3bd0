"""Datalists for the chest X-ray bundles, read from the real on-disk layouts of NIH ChestX-ray14 and CheXpert.

Each preparer returns, and optionally writes as JSON, a MONAI datalist::

    {
        "labels": ["Atelectasis", ..., "Hernia"],               # the 14 CHEXNET_LABELS, in output order
        "training":   [{"image": "images/00000001_000.png", "label": [14 ints], "patient_id": "1"}, ...],
        "validation": [...],
        "test":       [...],
    }

``image`` is relative to ``dataset_dir``, so ``monai.data.load_decathlon_datalist(file, data_list_key="training",
base_dir=dataset_dir)`` gives absolute paths. ``label`` holds one value per label in
:data:`~medzoo.cxr.labels.CHEXNET_LABELS` order:

- ``1``: finding present; ``0``: absent;
- ``-1``: unknown, to be ignored by losses and metrics (a label the source does not annotate, such as Nodule in
  CheXpert, or an uncertain CheXpert label under ``uncertain="ignore"``). Use a masked loss, or drop these entries
  before computing per-label metrics.

Training and validation are split patient-wise (no patient in both), deterministically from ``seed``; ``test`` is the
source's official test set (NIH ``test_list.txt``, CheXpert ``valid.csv``).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from medzoo.cxr.clinical import parse_age, parse_sex, parse_view
from medzoo.cxr.labels import CHEXNET_LABELS, CHEXPERT_TO_CHEXNET
from medzoo.errors import UserValueError
from medzoo.fileio import atomic_write_text

__all__ = ["UNKNOWN", "prepare_nih", "prepare_chexpert"]

#: Label value meaning "not annotated": ignored by losses and metrics.
UNKNOWN: int = -1

_NIH_CSV = "Data_Entry_2017.csv"
_NIH_NO_FINDING = "No Finding"
_UNCERTAIN_POLICIES = {"zeros": 0, "ones": 1, "ignore": UNKNOWN}
_CHEXPERT_PATIENT = re.compile(r"(patient\d+)")
_MAX_LISTED = 5
#: NIH column -> (datalist field, parser) of the clinical fields.
_NIH_CLINICAL = {
    "Patient Age": ("age", parse_age),
    "Patient Gender": ("sex", parse_sex),
    "View Position": ("view", parse_view),
}
_CHEXPERT_CLINICAL_COLUMNS = ("Age", "Sex", "Frontal/Lateral", "AP/PA")


def _datalist_json(datalist: dict) -> str:
    """``datalist`` as JSON text with one entry a line (readable diffs, small files)."""
    parts = []
    for key, value in datalist.items():
        body = ",\n  ".join(json.dumps(entry) for entry in value) if key != "labels" else ""
        parts.append(f"{json.dumps(key)}: " + (f"[\n  {body}\n ]" if body else json.dumps(value)))
    return "{\n " + ",\n ".join(parts) + "\n}\n"


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _check_fraction(val_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")


def _validation_patients(patient_ids: Iterable[str], val_fraction: float, seed: int) -> set[str]:
    """Choose ``round(val_fraction * n)`` patients (at least one when ``val_fraction > 0``, never all of them)."""
    patients = sorted(set(patient_ids))
    if val_fraction == 0.0 or len(patients) < 2:
        return set()
    num_val = min(max(1, round(val_fraction * len(patients))), len(patients) - 1)
    order = np.random.default_rng(seed).permutation(len(patients))
    return {patients[i] for i in order[:num_val]}


def _split(
    train_val: list[dict], test: list[dict], val_fraction: float, seed: int, source: str
) -> dict[str, list[dict] | list[str]]:
    """Assemble the datalist, splitting ``train_val`` patient-wise; raise if a split that should be filled is empty."""
    val_patients = _validation_patients((e["patient_id"] for e in train_val), val_fraction, seed)
    datalist = {
        "labels": list(CHEXNET_LABELS),
        "training": [e for e in train_val if e["patient_id"] not in val_patients],
        "validation": [e for e in train_val if e["patient_id"] in val_patients],
        "test": test,
    }
    for key in ("training", "validation", "test"):
        if not datalist[key] and not (key == "validation" and val_fraction == 0.0):
            hint = " (validation needs at least two training patients)" if key == "validation" else ""
            raise ValueError(f"no images for the '{key}' split in {source}{hint}")
    return datalist


def _raise_missing(missing: list[str], listing: Path, folder: Path, total: int) -> None:
    """Raise if images listed in ``listing`` are missing from ``folder``, naming the first few."""
    if missing:
        shown = ", ".join(missing[:_MAX_LISTED]) + (", ..." if len(missing) > _MAX_LISTED else "")
        raise FileNotFoundError(
            f"{len(missing)} of the {total} images listed in {listing} are missing from {folder}: {shown}"
        )


def _nih_image_index(dataset_dir: Path) -> dict[str, str]:
    """Map image file name -> path relative to ``dataset_dir``, from ``images/`` or the ``images_*/images/`` folders."""
    index: dict[str, str] = {}
    folders = [dataset_dir / "images"] + sorted(dataset_dir.glob("images_*/images"))
    for folder in folders:
        if folder.is_dir():
            rel = folder.relative_to(dataset_dir).as_posix()
            with os.scandir(folder) as entries:
                index.update({e.name: f"{rel}/{e.name}" for e in entries if e.name.lower().endswith(".png")})
    return index


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in _require_file(path, "NIH split list").read_text().splitlines() if line.strip()]


def prepare_nih(
    dataset_dir: str | os.PathLike,
    output_file: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    clinical: bool = False,
) -> dict:
    """Build the datalist of NIH ChestX-ray14 from its released layout.

    ``dataset_dir`` holds ``Data_Entry_2017.csv`` (columns ``Image Index``, ``Finding Labels`` with findings joined by
    ``|`` or ``No Finding``, ``Patient ID``, ...), ``train_val_list.txt`` and ``test_list.txt`` (one file name a
    line), and the PNGs in ``images/`` (or in the ``images_001/images/`` ... folders of some mirrors).

    Args:
        dataset_dir: the dataset folder.
        output_file: where to write the datalist JSON (atomically); not written when ``None``.
        val_fraction: fraction of the train_val patients moved to ``validation``, in [0, 1).
        seed: seed of the patient-wise training/validation split.
        clinical: also put ``age``, ``sex`` and ``view`` on every entry, from the columns ``Patient Age``,
            ``Patient Gender`` and ``View Position`` (:mod:`medzoo.cxr.clinical`; ``None`` when blank).

    Returns:
        the datalist described in the module docstring; labels are 0/1 (NIH annotates all 14 findings).

    Raises:
        FileNotFoundError: a layout file is missing, or listed images are missing (the first few are named).
        ValueError: an unknown finding name, a listed image absent from the CSV, a patient in both train_val and
            test lists, or an empty split.
    """
    _check_fraction(val_fraction)
    root = Path(dataset_dir)
    csv_path = _require_file(root / _NIH_CSV, "NIH label file")
    label_index = {name: i for i, name in enumerate(CHEXNET_LABELS)}

    entries: dict[str, dict] = {}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        required = {"Image Index", "Finding Labels", "Patient ID"} | (set(_NIH_CLINICAL) if clinical else set())
        missing_columns = required - set(reader.fieldnames or ())
        if missing_columns:
            raise ValueError(f"{csv_path} lacks the columns {sorted(missing_columns)}; it has {reader.fieldnames}")
        for row in reader:
            name, findings = row["Image Index"].strip(), row["Finding Labels"].strip()
            label = [0] * len(CHEXNET_LABELS)
            if findings != _NIH_NO_FINDING:
                for finding in findings.split("|"):
                    if finding.strip() not in label_index:
                        raise ValueError(
                            f"{csv_path} line {reader.line_num} ({name}): unknown finding '{finding}' in "
                            f"'{findings}'; expected '{_NIH_NO_FINDING}' or names from {list(CHEXNET_LABELS)}"
                        )
                    label[label_index[finding.strip()]] = 1
            entries[name] = {"image": name, "label": label, "patient_id": row["Patient ID"].strip()}
            if clinical:
                where = f"{csv_path} line {reader.line_num} ({name})"
                entries[name].update({f: parse(row[c], f"{where}, {c}") for c, (f, parse) in _NIH_CLINICAL.items()})

    images = _nih_image_index(root)
    splits: dict[str, list[dict]] = {}
    for key, list_name in (("train_val", "train_val_list.txt"), ("test", "test_list.txt")):
        names = _read_list(root / list_name)
        unlabelled = [n for n in names if n not in entries]
        if unlabelled:
            raise ValueError(
                f"{len(unlabelled)} images of {root / list_name} are not in {csv_path}: {unlabelled[:_MAX_LISTED]}"
            )
        _raise_missing([n for n in names if n not in images], root / list_name, root / "images", len(names))
        splits[key] = [{**entries[n], "image": images[n]} for n in names]

    shared = {e["patient_id"] for e in splits["train_val"]} & {e["patient_id"] for e in splits["test"]}
    if shared:
        raise ValueError(
            f"patients in both train_val_list.txt and test_list.txt of {root}: {sorted(shared)[:_MAX_LISTED]}"
        )
    datalist = _split(splits["train_val"], splits["test"], val_fraction, seed, str(root))
    if output_file is not None:
        atomic_write_text(output_file, _datalist_json(datalist))
    return datalist


def _find_chexpert_root(dataset_dir: Path) -> Path:
    """The folder holding ``train.csv``: ``dataset_dir`` itself or its single subfolder that has one."""
    if (dataset_dir / "train.csv").is_file():
        return dataset_dir
    candidates = sorted(p.parent for p in dataset_dir.glob("*/train.csv"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise FileNotFoundError(f"CheXpert train.csv not found in {dataset_dir} nor in any of its subfolders")
    raise ValueError(f"several CheXpert folders in {dataset_dir}: {[p.name for p in candidates]}; pass one of them")


def _chexpert_value(raw: str, uncertain: int, where: str) -> int:
    """A CheXpert cell as a label: 1.0 -> 1, 0.0 or blank -> 0, -1.0 -> ``uncertain``."""
    try:
        value = float(raw) if raw.strip() else 0.0
    except ValueError:
        value = None
    if value == -1.0:
        return uncertain
    if value in (0.0, 1.0):
        return int(value)
    raise ValueError(f"{where}: expected 1.0, 0.0, -1.0 or blank, got '{raw}'")


def _chexpert_clinical(row: dict, where: str) -> dict:
    """``age``, ``sex``, ``view`` of a CheXpert row (``Frontal/Lateral`` and ``AP/PA`` give the view)."""
    position = row["Frontal/Lateral"].strip()
    if position not in ("Frontal", "Lateral", ""):
        raise UserValueError(
            f"{where}, Frontal/Lateral: '{position}' is not Frontal, Lateral or blank; fix or blank it"
        )
    projection = row["AP/PA"].strip().upper()
    view = "LATERAL" if position == "Lateral" else (projection if position and projection in ("AP", "PA") else None)
    return {"age": parse_age(row["Age"], f"{where}, Age"), "sex": parse_sex(row["Sex"], f"{where}, Sex"), "view": view}


def _read_chexpert_csv(
    csv_path: Path, chexpert_root: Path, dataset_dir: Path, uncertain: int, frontal_only: bool, clinical: bool = False
) -> list[dict]:
    """Entries of one CheXpert CSV, with image paths relative to ``dataset_dir``; raise if images are missing."""
    columns = {CHEXNET_LABELS.index(chexnet): chexpert for chexpert, chexnet in CHEXPERT_TO_CHEXNET.items()}
    prefix = PurePosixPath(chexpert_root.relative_to(dataset_dir).as_posix())
    keeps_first_part: dict[str, bool] = {}
    entries, missing = [], []
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        required = {"Path", *columns.values()} | ({"Frontal/Lateral"} if frontal_only else set())
        required |= set(_CHEXPERT_CLINICAL_COLUMNS) if clinical else set()
        missing_columns = required - set(reader.fieldnames or ())
        if missing_columns:
            raise ValueError(f"{csv_path} lacks the columns {sorted(missing_columns)}; it has {reader.fieldnames}")
        for row in reader:
            if frontal_only and row["Frontal/Lateral"].strip() != "Frontal":
                continue
            where = f"{csv_path} line {reader.line_num}"
            path = PurePosixPath(row["Path"].strip().replace("\\", "/"))
            if not path.parts:
                raise ValueError(f"{where}: empty Path")
            # CSV paths start with the dataset folder name (CheXpert-v1.0-small/train/...); some copies omit it
            first = path.parts[0]
            if first not in keeps_first_part:
                keeps_first_part[first] = (chexpert_root / first).is_dir()
            inner = path if keeps_first_part[first] else PurePosixPath(*path.parts[1:])
            patient = _CHEXPERT_PATIENT.search(str(path))
            if patient is None:
                raise ValueError(f"{where}: no patient id (patientNNNNN) in path '{path}'")
            label = [UNKNOWN] * len(CHEXNET_LABELS)
            for i, column in columns.items():
                label[i] = _chexpert_value(row[column], uncertain, f"{where}, column '{column}'")
            image = (prefix / inner).as_posix() if prefix.parts else inner.as_posix()
            if not (dataset_dir / image).is_file():
                missing.append(image)
            entries.append({"image": image, "label": label, "patient_id": patient.group(1)})
            if clinical:
                entries[-1].update(_chexpert_clinical(row, where))
    _raise_missing(missing, csv_path, dataset_dir, len(entries))
    return entries


def prepare_chexpert(
    dataset_dir: str | os.PathLike,
    output_file: str | os.PathLike | None = None,
    uncertain: str = "zeros",
    val_fraction: float = 0.1,
    seed: int = 0,
    frontal_only: bool = False,
    clinical: bool = False,
) -> dict:
    """Build the datalist of CheXpert (``CheXpert-v1.0`` or ``CheXpert-v1.0-small``) in the 14 CheXNet labels.

    ``train.csv`` and ``valid.csv`` have a ``Path`` column (``CheXpert-v1.0-small/train/patient00001/study1/
    view1_frontal.jpg``) and 14 observation columns holding 1.0, 0.0, -1.0 (uncertain) or blank (not mentioned). The
    observations shared with CheXNet (:data:`~medzoo.cxr.labels.CHEXPERT_TO_CHEXNET`) are mapped by name; the other
    CheXNet labels are ``-1`` (unknown). Blank becomes 0.

    Args:
        dataset_dir: the CheXpert folder (holding ``train.csv``) or its parent.
        output_file: where to write the datalist JSON (atomically); not written when ``None``.
        uncertain: what an uncertain ``-1.0`` becomes: ``"zeros"`` -> 0, ``"ones"`` -> 1, ``"ignore"`` -> -1.
        val_fraction: fraction of the ``train.csv`` patients moved to ``validation``, in [0, 1).
        seed: seed of the patient-wise training/validation split.
        frontal_only: keep only rows whose ``Frontal/Lateral`` column is ``Frontal``, as the NIH images are.
        clinical: also put ``age``, ``sex`` and ``view`` on every entry, from the columns ``Age``, ``Sex`` and
            ``Frontal/Lateral`` with ``AP/PA`` (:mod:`medzoo.cxr.clinical`; ``None`` when blank or unknown).

    Returns:
        the datalist described in the module docstring; ``valid.csv`` becomes ``test``, and ``patient_id`` is the
        ``patientNNNNN`` part of the path.

    Raises:
        FileNotFoundError: a CSV or listed images are missing (the first few are named).
        ValueError: an unknown ``uncertain`` policy, an unexpected label value, a path without a patient id, or an
            empty split.
    """
    if uncertain not in _UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain must be one of {sorted(_UNCERTAIN_POLICIES)}, got '{uncertain}'")
    _check_fraction(val_fraction)
    root = Path(dataset_dir)
    chexpert_root = _find_chexpert_root(root)
    policy = _UNCERTAIN_POLICIES[uncertain]
    train_val = _read_chexpert_csv(chexpert_root / "train.csv", chexpert_root, root, policy, frontal_only, clinical)
    test_csv = _require_file(chexpert_root / "valid.csv", "CheXpert valid.csv")
    test = _read_chexpert_csv(test_csv, chexpert_root, root, policy, frontal_only, clinical)
    datalist = _split(train_val, test, val_fraction, seed, str(chexpert_root))
    if output_file is not None:
        atomic_write_text(output_file, _datalist_json(datalist))
    return datalist
