"""Clinical fields of chest X-ray data sets (age, sex, view) as network input: parsing, encoding, inference inputs.

The preparers (:func:`medzoo.cxr.datasets.prepare_nih`, :func:`~medzoo.cxr.datasets.prepare_chexpert` with
``clinical=True``) put three raw fields on every datalist entry, ``null`` (``None``) when the source does not give it:

- ``age``: age in years, a number in [0, 120]; NIH ``Patient Age`` (``58`` or the older ``058Y``), CheXpert ``Age``.
  A number outside [0, 120] (the NIH file has a few, e.g. 412) is treated as missing;
- ``sex``: ``"F"`` or ``"M"``; NIH ``Patient Gender`` (``F``/``M``), CheXpert ``Sex`` (``Female``/``Male``;
  ``Unknown`` is missing);
- ``view``: ``"PA"``, ``"AP"`` or ``"LATERAL"``; NIH ``View Position``, CheXpert ``Frontal/Lateral`` with ``AP/PA``
  (a lateral image is ``LATERAL``; a frontal one whose ``AP/PA`` is neither ``AP`` nor ``PA`` is missing).

:class:`ClinicalVectord` encodes them into the float vector ``clinical`` of :data:`CLINICAL_FEATURES` (8 values)::

    age_years_div_100  age / 100 (0 when missing)       age_missing   1 when age is missing, else 0
    sex_female         1 female, 0 male (0 when missing) sex_missing   1 when sex is missing, else 0
    view_ap, view_pa, view_lateral   one-hot of the view (all 0 when missing)   view_missing  1 when missing

so a missing value is an input of its own (its indicator), never a silent 0. A malformed value is a one-line
:class:`~medzoo.errors.UserValueError` naming the file and row.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from medzoo.errors import UserFileNotFoundError, UserValueError

__all__ = [
    "CLINICAL_FEATURES",
    "CLINICAL_FIELDS",
    "ClinicalVectord",
    "VIEWS",
    "encode_clinical",
    "list_clinical_inputs",
    "parse_age",
    "parse_sex",
    "parse_view",
    "write_clinical_csv",
]

#: The raw fields of a datalist entry, in encoding order.
CLINICAL_FIELDS: tuple[str, ...] = ("age", "sex", "view")
#: The views, in the order of their one-hot features.
VIEWS: tuple[str, ...] = ("AP", "PA", "LATERAL")
#: Names of the encoded features, in vector order.
CLINICAL_FEATURES: tuple[str, ...] = (
    "age_years_div_100",
    "age_missing",
    "sex_female",
    "sex_missing",
    "view_ap",
    "view_pa",
    "view_lateral",
    "view_missing",
)
MAX_AGE_YEARS: float = 120.0
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*Y?$", re.IGNORECASE)
_SEXES = {"F": "F", "FEMALE": "F", "M": "M", "MALE": "M", "": None, "UNKNOWN": None, "U": None, "O": None}


def parse_age(raw: object, where: str) -> float | None:
    """Age in years from ``58``, ``"58"``, ``"058Y"``; ``None`` for blank or outside [0, 120]."""
    if raw is None:
        return None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    else:
        if not str(raw).strip():
            return None
        match = _AGE.match(str(raw).strip())
        if match is None:
            raise UserValueError(f"{where}: age '{raw}' is not a number of years (e.g. 58 or 058Y); fix or blank it")
        value = float(match.group(1))
    return value if 0.0 <= value <= MAX_AGE_YEARS else None


def parse_sex(raw: object, where: str) -> str | None:
    """``"F"``/``"M"`` from F, M, Female, Male (any case); ``None`` for blank or Unknown."""
    if raw is None:
        return None
    key = str(raw).strip().upper()
    if key not in _SEXES:
        raise UserValueError(
            f"{where}: sex '{raw}' is not one of F, M, Female, Male, Unknown or blank; fix or blank it"
        )
    return _SEXES[key]


def parse_view(raw: object, where: str) -> str | None:
    """``"AP"``/``"PA"``/``"LATERAL"`` (any case; ``LL``/``RL`` are lateral); ``None`` for blank."""
    if raw is None:
        return None
    key = str(raw).strip().upper()
    if not key:
        return None
    key = "LATERAL" if key in ("LL", "RL") else key
    if key not in VIEWS:
        raise UserValueError(f"{where}: view '{raw}' is not one of {', '.join(VIEWS)} or blank; fix or blank it")
    return key


def encode_clinical(age: float | None, sex: str | None, view: str | None) -> list[float]:
    """The :data:`CLINICAL_FEATURES` vector (8 floats) of parsed fields (see the module docstring)."""
    vector = [0.0 if age is None else age / 100.0, float(age is None)]
    vector += [float(sex == "F"), float(sex is None)]
    vector += [float(view == v) for v in VIEWS] + [float(view is None)]
    return vector


class ClinicalVectord:
    """Dictionary transform: read ``age``, ``sex``, ``view`` of an item, write the float32 tensor ``clinical`` (8,)
    of :func:`encode_clinical`, and drop the raw fields (a ``None`` would not collate).

    Raises :class:`~medzoo.errors.UserValueError` when an item lacks one of the fields (naming the item's ``image``)
    or holds a malformed value.

    Example::

        ClinicalVectord()({"image": "a.png", "age": 58, "sex": "F", "view": None})["clinical"]
        # tensor([0.58, 0., 1., 0., 0., 0., 0., 1.])
    """

    def __init__(self, output_key: str = "clinical", source_key: str = "image") -> None:
        self.output_key = output_key
        self.source_key = source_key

    def __call__(self, data: Mapping) -> dict:
        item = dict(data)
        where = str(item.get(self.source_key, "item"))
        missing = [f for f in CLINICAL_FIELDS if f not in item]
        if missing:
            raise UserValueError(
                f"{where}: no clinical field {missing} in the datalist entry; prepare the datalist with "
                "clinical=True (null marks a missing value)"
            )
        fields = (
            parse_age(item.pop("age"), where),
            parse_sex(item.pop("sex"), where),
            parse_view(item.pop("view"), where),
        )
        item[self.output_key] = torch.tensor(encode_clinical(*fields), dtype=torch.float32)
        return item


def _text(value: object) -> str:
    """A raw field as text, ``""`` for missing: every input's fields collate, even an input that fails to load."""
    return "" if value is None else str(value).strip()


def list_clinical_inputs(
    source: str | os.PathLike, base_dir: str | os.PathLike | None = None, datalist_key: str = "test"
) -> list[dict]:
    """Inference inputs with their clinical fields: ``[{"image": path, "age", "sex", "view"}, ...]``, the fields as
    text (``""`` for a missing value), parsed by :class:`ClinicalVectord` per input (a malformed value fails that
    input alone).

    Args:
        source: a datalist JSON (list ``datalist_key``, entries with ``image`` and the three fields) or a CSV with
            the columns ``image``, ``age``, ``sex``, ``view`` (blank cells are missing values).
        base_dir: folder relative image paths are resolved against (default: the folder of ``source``).
        datalist_key: the list of a datalist JSON to read.

    Raises:
        medzoo.errors.UserFileNotFoundError: ``source`` does not exist.
        medzoo.errors.UserValueError: not a .json/.csv file, a field column missing, or no rows.
    """
    source = Path(source)
    if not source.is_file():
        raise UserFileNotFoundError(
            f"input not found: {source}; pass a datalist JSON or a CSV with columns image,age,sex,view via --input"
        )
    base = Path(base_dir) if base_dir is not None else source.parent
    if source.suffix.lower() == ".json":
        from medzoo.data import load_datalist

        rows = load_datalist(source, datalist_key, base)
        for i, row in enumerate(rows):
            missing = [f for f in ("image", *CLINICAL_FIELDS) if f not in row]
            if missing:
                raise UserValueError(
                    f"{source}: entry {i} of '{datalist_key}' lacks {missing}; every entry needs image, age, sex, "
                    "view (null for a missing value)"
                )
        return [{"image": row["image"], **{f: _text(row[f]) for f in CLINICAL_FIELDS}} for row in rows]
    if source.suffix.lower() != ".csv":
        raise UserValueError(
            f"{source}: this bundle reads a datalist JSON or a CSV (image,age,sex,view), not a {source.suffix} file"
        )
    with open(source, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("image", *CLINICAL_FIELDS) if c not in (reader.fieldnames or ())]
        if missing:
            raise UserValueError(f"{source}: no column {missing}; the CSV needs the columns image,age,sex,view")
        rows = [
            {"image": str(base / row["image"].strip()), **{f: _text(row[f]) for f in CLINICAL_FIELDS}} for row in reader
        ]
    if not rows:
        raise UserValueError(f"{source}: no rows; add one row per image")
    return rows


def write_clinical_csv(path: str | os.PathLike, rows: Sequence[Mapping]) -> Path:
    """Write ``rows`` (``image``, ``age``, ``sex``, ``view``; ``None`` as blank) as a CSV :func:`list_clinical_inputs`
    reads."""
    from medzoo.fileio import atomic_write_text

    lines = [",".join(("image", *CLINICAL_FIELDS))]
    lines += [",".join("" if r.get(k) is None else str(r[k]) for k in ("image", *CLINICAL_FIELDS)) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return Path(path)
