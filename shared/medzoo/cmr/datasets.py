"""Validating a cardiac MR data set in the cardiac layout and writing patient-wise splits as a MONAI datalist.

Layout (``dataset_dir``)::

    images/cmr/<case>/<slice>.nii.gz          cine slice (T, H, W); the slice index is the last number in <slice>
    images/lge/<case>/<slice>.nii.gz          LGE slice (H, W)                       [needed for registration]
    labels/cmr/cmr_Myo_mask/<case>.nii.gz     myocardium on cine frame 0, (S, H, W) in {0, 1}
    labels/lge/lge_Myo_labels/<case>.nii.gz   myocardium on the LGE slices, (S, H, W)  [needed for registration]
    labels/lge/lge_MI_labels/<case>.nii.gz    infarct on the LGE slices, (S, H, W)     [optional]
    labels/cmr/cmr_MI_labels/<case>.nii.gz    infarct on cine frame 0, (S, H, W)       [needed for MI segmentation]

The datalist has one entry per slice, paths relative to ``dataset_dir``::

    {"training": [{"case": "case_000", "slice_index": 0, "cine": "images/cmr/case_000/slice_00.nii.gz",
                   "cine_myo": "labels/cmr/cmr_Myo_mask/case_000.nii.gz", "lge": ..., "lge_myo": ...,
                   "lge_mi": ..., "cine_mi": ...}, ...],
     "validation": [...], "test": [...]}

Keys whose files a case lacks are left out of its entries. Cases (patients) are split, never slices, so no patient
is in two lists.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np

from medzoo.fileio import atomic_write_text

__all__ = ["LAYOUT", "prepare_cmr", "slice_index_of", "validate_cmr"]

#: Datalist key -> folder (per-slice files) or file pattern (per-case masks) of the cardiac layout.
LAYOUT: dict[str, str] = {
    "cine": "images/cmr/{case}",
    "lge": "images/lge/{case}",
    "cine_myo": "labels/cmr/cmr_Myo_mask/{case}.nii.gz",
    "lge_myo": "labels/lge/lge_Myo_labels/{case}.nii.gz",
    "lge_mi": "labels/lge/lge_MI_labels/{case}.nii.gz",
    "cine_mi": "labels/cmr/cmr_MI_labels/{case}.nii.gz",
}
_NUMBER = re.compile(r"(\d+)")
_MAX_LISTED = 20
#: What nibabel raises on a missing, truncated or non-NIfTI file.
_READ_ERRORS = (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError)


def slice_index_of(path: str | os.PathLike) -> int:
    """The slice index of a slice file: the last number in its name (``slice_03.nii.gz`` -> 3, ``7.nii.gz`` -> 7)."""
    stem = Path(path).name.split(".")[0]
    numbers = _NUMBER.findall(stem)
    if not numbers:
        raise ValueError(f"{path}: no slice number in the file name (expected e.g. slice_03.nii.gz or 3.nii.gz)")
    return int(numbers[-1])


def _slices(folder: Path) -> dict[int, Path]:
    files = sorted(p for p in folder.iterdir() if p.name.endswith((".nii", ".nii.gz")))
    indexed: dict[int, Path] = {}
    for f in files:
        k = slice_index_of(f)
        if k in indexed:
            raise ValueError(f"{folder}: two files for slice {k}: {indexed[k].name}, {f.name}")
        indexed[k] = f
    return indexed


def _check_mask(path: Path, expected_hw: tuple[int, int], needed_slices: int, problems: list[str]) -> None:
    try:
        image = nib.load(str(path))
        values = np.unique(np.asarray(image.dataobj))
    except _READ_ERRORS as e:
        problems.append(f"{path}: not a readable NIfTI file ({e})")
        return
    if len(image.shape) != 3:
        problems.append(f"{path}: expected a per-case mask (S, H, W), got shape {image.shape}")
        return
    if tuple(image.shape[1:]) != expected_hw:
        problems.append(f"{path}: in-plane shape {image.shape[1:]} differs from its images' {expected_hw}")
    if image.shape[0] < needed_slices:
        problems.append(f"{path}: has {image.shape[0]} slices but slice index {needed_slices - 1} is used")
    if not np.isin(values, (0, 1)).all():
        problems.append(f"{path}: mask values must be 0 or 1, found {values[:6].tolist()}")


def _plane_shape(path: Path, ndim: int, problems: list[str]) -> tuple[int, int] | None:
    try:
        shape = nib.load(str(path)).shape
    except _READ_ERRORS as e:
        problems.append(f"{path}: not a readable NIfTI file ({e})")
        return None
    squeezed = shape if ndim == 3 else tuple(s for s in shape if s != 1)
    if len(squeezed) != ndim or (ndim == 3 and shape[0] < 2):
        what = "a cine slice (T >= 2, H, W)" if ndim == 3 else "an LGE slice (H, W)"
        problems.append(f"{path}: expected {what}, got shape {shape}")
        return None
    return tuple(squeezed[-2:])


def validate_cmr(dataset_dir: str | os.PathLike, require: tuple[str, ...] = ("cine_myo",)) -> list[dict]:
    """Check a data set in the cardiac layout and return one entry per cine slice (paths relative to the folder).

    Checked: every case's slices and masks are readable; cine slices are (T >= 2, H, W); masks are (S, H, W) with the
    images' H, W, enough slices for every slice index, and values in {0, 1}; LGE slices exist for every cine slice
    and match their LGE masks. ``require`` names the datalist keys (see :data:`LAYOUT`) every case must have, e.g.
    ``("cine_myo", "lge", "lge_myo")`` for registration or ``("cine_myo", "cine_mi")`` for MI segmentation.

    Raises:
        FileNotFoundError: no ``images/cmr`` folder or no case in it.
        ValueError: listing every problem found (up to 20), each naming its file.
    """
    root = Path(dataset_dir)
    unknown = set(require) - set(LAYOUT)
    if unknown:
        raise ValueError(f"unknown required keys {sorted(unknown)}; known: {sorted(LAYOUT)}")
    cine_root = root / "images" / "cmr"
    if not cine_root.is_dir():
        raise FileNotFoundError(f"{cine_root}: no cine folder (expected images/cmr/<case>/<slice>.nii.gz)")
    cases = sorted(p.name for p in cine_root.iterdir() if p.is_dir())
    if not cases:
        raise FileNotFoundError(f"{cine_root}: no case folders")
    problems: list[str] = []
    entries: list[dict] = []
    for case in cases:
        try:
            cine_slices = _slices(cine_root / case)
            lge_folder = root / LAYOUT["lge"].format(case=case)
            lge_slices = _slices(lge_folder) if lge_folder.is_dir() else {}
        except ValueError as e:
            problems.append(str(e))
            continue
        if not cine_slices:
            problems.append(f"{cine_root / case}: no cine slices")
            continue
        present = {key: root / LAYOUT[key].format(case=case) for key in ("cine_myo", "lge_myo", "lge_mi", "cine_mi")}
        present = {key: path for key, path in present.items() if path.is_file()}
        if lge_slices:
            present["lge"] = lge_folder
        for key in require:
            if key not in present:
                problems.append(f"case {case}: missing {root / LAYOUT[key].format(case=case)}")
        cine_hw = {k: _plane_shape(f, 3, problems) for k, f in cine_slices.items()}
        known_hw = {hw for hw in cine_hw.values() if hw is not None}
        if len(known_hw) > 1:
            problems.append(f"case {case}: cine slices differ in shape {sorted(known_hw)}")
        needed = max(cine_slices) + 1
        for key in ("cine_myo", "cine_mi"):
            if key in present and len(known_hw) == 1:
                _check_mask(present[key], next(iter(known_hw)), needed, problems)
        if "lge" in present:
            missing_lge = sorted(set(cine_slices) - set(lge_slices))
            if missing_lge:
                problems.append(f"case {case}: no LGE slice for cine slice(s) {missing_lge} in {lge_folder}")
            lge_hw = {_plane_shape(f, 2, problems) for f in lge_slices.values()} - {None}
            if len(lge_hw) > 1:
                problems.append(f"case {case}: LGE slices differ in shape {sorted(lge_hw)}")
            for key in ("lge_myo", "lge_mi"):
                if key in present and len(lge_hw) == 1:
                    _check_mask(present[key], next(iter(lge_hw)), max(lge_slices) + 1, problems)
        for k, cine_file in sorted(cine_slices.items()):
            entry = {"case": case, "slice_index": k, "cine": cine_file.relative_to(root).as_posix()}
            for key in ("cine_myo", "lge_myo", "lge_mi", "cine_mi"):
                if key in present:
                    entry[key] = present[key].relative_to(root).as_posix()
            if k in lge_slices:
                entry["lge"] = lge_slices[k].relative_to(root).as_posix()
            entries.append(entry)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise ValueError(f"cardiac data set {root} has {len(problems)} problem(s):\n  {listed}{more}")
    return entries


def prepare_cmr(
    dataset_dir: str | os.PathLike,
    datalist_file: str | os.PathLike | None = None,
    require: tuple[str, ...] | list[str] = ("cine_myo",),
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> dict:
    """Validate ``dataset_dir`` (see :func:`validate_cmr`) and split its cases into training/validation/test.

    The split is by case (patient), deterministic for a ``seed``; with at least three cases each list gets at least
    one case. Writes the datalist as JSON to ``datalist_file`` (atomically) if given, and returns it.
    """
    entries = validate_cmr(dataset_dir, tuple(require))
    cases = sorted({e["case"] for e in entries})
    order = [cases[i] for i in np.random.default_rng(seed).permutation(len(cases))]
    n_val = max(1, round(val_fraction * len(cases))) if len(cases) >= 3 else 0
    n_test = max(1, round(test_fraction * len(cases))) if len(cases) >= 3 else 0
    split_of = {case: "validation" for case in order[:n_val]}
    split_of.update({case: "test" for case in order[n_val : n_val + n_test]})
    datalist: dict[str, list[dict]] = {"training": [], "validation": [], "test": []}
    for entry in entries:
        datalist[split_of.get(entry["case"], "training")].append(entry)
    if datalist_file is not None:
        text = (
            "{\n"
            + ",\n".join(
                f" {json.dumps(key)}: [\n  " + ",\n  ".join(json.dumps(e) for e in value) + "\n ]"
                for key, value in datalist.items()
            )
            + "\n}\n"
        )
        atomic_write_text(datalist_file, text)
    return datalist
