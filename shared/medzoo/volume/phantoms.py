"""Synthetic abdominal CT / MRI phantoms, written in the Medical Segmentation Decathlon layout.

Every volume is drawn in physical (millimetre) coordinates, so cases with different voxel spacings and orientations
show the same anatomy once resampled: the 3D bundles' spacing and orientation normalisation have real work to do.

Anatomy (label values of the segmentation phantoms, :data:`ORGAN_LABELS`): 1 liver (large ellipsoid on the image's
low-x side), 2 spleen (smaller, high-x side), 3 kidneys (two ellipsoids behind them). Unlabelled tissue: fat rim,
soft-tissue body, spine. Each organ gets a smooth texture, each case random organ positions, sizes and rotations,
white noise, and CT-like Hounsfield units (:data:`CT_HU`) or arbitrary MR units with a bias field and a random
global scale (:data:`MR_INTENSITY`), air exactly 0 in MR as after background masking.

The classification phantoms (:data:`LESION_CLASSES`) add, or not, one focal liver lesion: a hypodense cyst or a
hyperdense (hypervascular) lesion; the volume-level class is the ground truth.

On-disk layout (as a real MSD task)::

    <output_dir>/
        dataset.json        name, modality, labels, numTraining, numTest, training [{image, label}], test [paths]
        imagesTr/case_000.nii.gz
        labelsTr/case_000.nii.gz    (segmentation) -- classification labels are ints in dataset.json
        imagesTs/case_100.nii.gz

Synthetic volumes exist to test pipelines and show that training learns; they say nothing about real patients.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from medzoo.fileio import atomic_write_text
from medzoo.io_checks import save_nifti

__all__ = [
    "CT_HU",
    "LESION_CLASSES",
    "MR_INTENSITY",
    "ORGAN_LABELS",
    "Phantom",
    "draw_phantom",
    "generate_lesion_classification_sample",
    "generate_msd_segmentation_sample",
]

#: Label value -> organ name of the segmentation phantoms (dataset.json ``labels``).
ORGAN_LABELS: dict[int, str] = {0: "background", 1: "liver", 2: "spleen", 3: "kidney"}
#: Class index -> name of the classification phantoms. ``binary`` uses the first two (any lesion is class 1).
LESION_CLASSES: dict[int, str] = {0: "no_lesion", 1: "cyst", 2: "hyperdense_lesion"}

#: Mean Hounsfield units of each tissue in the CT phantoms.
CT_HU: dict[str, float] = {
    "air": -1000.0,
    "fat": -100.0,
    "soft": 40.0,
    "bone": 700.0,
    "liver": 100.0,
    "spleen": 145.0,
    "kidney": 200.0,
    "cyst": 5.0,
    "hyperdense_lesion": 230.0,
}
#: Mean intensity (arbitrary units, before the random global scale) of each tissue in the MR phantoms.
MR_INTENSITY: dict[str, float] = {
    "air": 0.0,
    "fat": 900.0,
    "soft": 300.0,
    "bone": 120.0,
    "liver": 480.0,
    "spleen": 640.0,
    "kidney": 780.0,
    "cyst": 1100.0,
    "hyperdense_lesion": 200.0,
}
_TISSUES = ("air", "fat", "soft", "bone", "liver", "spleen", "kidney", "cyst", "hyperdense_lesion")
_TEXTURE = {"CT": 12.0, "MRI": 30.0}  # amplitude of the smooth per-organ texture
_NOISE = {"CT": 18.0, "MRI": 25.0}  # standard deviation of the white noise


@dataclass
class Phantom:
    """One drawn volume, stored as on disk: ``image`` (X, Y, Z) float32, ``label`` (X, Y, Z) uint8 organ labels,
    ``affine`` (4, 4) voxel -> RAS millimetres."""

    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray


def _ellipsoid(
    grid: tuple[np.ndarray, ...], centre: Sequence[float], radii: Sequence[float], angle: float
) -> np.ndarray:
    """Boolean mask of an ellipsoid rotated by ``angle`` (radians) about z; all lengths in mm."""
    x, y, z = (g - c for g, c in zip(grid, centre))
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * x + sin * y, -sin * x + cos * y
    return (u / radii[0]) ** 2 + (v / radii[1]) ** 2 + (z / radii[2]) ** 2 <= 1.0


def draw_phantom(
    fov_mm: Sequence[float],
    spacing: Sequence[float],
    rng: np.random.Generator,
    modality: str = "CT",
    flip_xy: bool = False,
    lesion: str | None = None,
) -> Phantom:
    """Draw one abdominal phantom.

    Args:
        fov_mm: field of view (x, y, z) in mm; the volume has ``round(fov / spacing)`` voxels per axis.
        spacing: voxel size (x, y, z) in mm.
        rng: random generator (positions, sizes, texture, noise).
        modality: ``"CT"`` (Hounsfield units) or ``"MRI"`` (arbitrary units, bias field, random scale).
        flip_xy: store the array with x and y reversed (an LPS-ordered file); the affine says so.
        lesion: ``None``, ``"cyst"`` or ``"hyperdense_lesion"``: a focal liver lesion (not in ``label``).
    """
    if modality not in _NOISE:
        raise ValueError(f"modality must be one of {sorted(_NOISE)}, got {modality!r}")
    fov, spacing = np.asarray(fov_mm, float), np.asarray(spacing, float)
    shape = tuple(int(n) for n in np.maximum(np.round(fov / spacing), 8))
    axes = [(np.arange(n) + 0.5) * s - f / 2 for n, s, f in zip(shape, spacing, fov)]
    grid = tuple(np.meshgrid(*axes, indexing="ij", sparse=True))
    half = fov / 2

    def jitter(scale):
        return rng.uniform(-scale, scale, 3)

    tissue = np.zeros(shape, np.uint8)  # index into _TISSUES; 0 is air
    label = np.zeros(shape, np.uint8)
    tissue[_ellipsoid(grid, (0, 0, 0), half * (0.92, 0.78, 1.6), 0.0)] = _TISSUES.index("fat")
    tissue[_ellipsoid(grid, (0, 0, 0), half * (0.84, 0.70, 1.6), 0.0)] = _TISSUES.index("soft")
    tissue[_ellipsoid(grid, half * (0, -0.52, 0), half * (0.13, 0.13, 2.0), 0.0)] = _TISSUES.index("bone")
    organs = [
        (1, "liver", (-0.36, 0.08, 0.10), (0.42, 0.38, 0.50)),
        (2, "spleen", (0.44, -0.02, 0.18), (0.29, 0.26, 0.40)),
        (3, "kidney", (-0.33, -0.40, -0.30), (0.21, 0.18, 0.34)),
        (3, "kidney", (0.33, -0.40, -0.30), (0.21, 0.18, 0.34)),
    ]
    placed = {}
    for value, name, centre, radii in organs:
        centre = half * (np.asarray(centre) + jitter(0.05))
        radii = half * np.asarray(radii) * rng.uniform(0.85, 1.15, 3)
        mask = _ellipsoid(grid, centre, radii, rng.uniform(-0.3, 0.3))
        tissue[mask] = _TISSUES.index(name)
        label[mask] = value
        placed[name] = (mask, centre, radii)
    liver_mask, liver_centre, liver_radii = placed["liver"]
    radius = float(np.min(liver_radii)) * rng.uniform(0.45, 0.6)  # drawn with or without a lesion: same anatomy
    offset = (liver_radii - radius) * jitter(0.3)
    if lesion is not None:
        if lesion not in ("cyst", "hyperdense_lesion"):
            raise ValueError(f"lesion must be None, 'cyst' or 'hyperdense_lesion', got {lesion!r}")
        tissue[_ellipsoid(grid, liver_centre + offset, (radius,) * 3, 0.0) & liver_mask] = _TISSUES.index(lesion)

    means = CT_HU if modality == "CT" else MR_INTENSITY
    image = np.zeros(shape, np.float32)
    noise = rng.normal(0.0, _NOISE[modality], shape)  # drawn first, so a lesion changes nothing but itself
    sigma_vox = 4.0 / spacing  # texture correlation length of about 4 mm
    for index in np.unique(tissue):
        name, mask = _TISSUES[index], tissue == index
        if name == "air":
            image[mask] = means["air"]
            continue
        texture = gaussian_filter(rng.standard_normal(shape), sigma_vox)
        texture *= _TEXTURE[modality] / max(float(texture.std()), 1e-6)
        image[mask] = means[name] + rng.uniform(-8, 8) + texture[mask]
    body = tissue != 0
    image[body] += noise[body]
    if modality == "MRI":
        ramp = 1.0 + 0.2 * sum(rng.uniform(-1, 1) * g / h for g, h in zip(grid, half))
        image = (image * ramp * rng.uniform(0.5, 2.0)).astype(np.float32)
        image[~body] = 0.0

    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -fov / 2 + spacing / 2
    if flip_xy:
        image, label = image[::-1, ::-1].copy(), label[::-1, ::-1].copy()
        for axis in (0, 1):
            affine[axis, 3] += (shape[axis] - 1) * spacing[axis]
            affine[axis, axis] = -spacing[axis]
    return Phantom(image=image.astype(np.float32), label=label, affine=affine)


def _save_image(image: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write a phantom's intensities as scanners store them, rounded to int16 (Hounsfield units for CT): half the
    bytes of float32 to decompress on every read."""
    save_nifti(np.round(image).astype(np.int16), affine, path, compresslevel=1)


def _case_geometry(rng: np.random.Generator, spacing: Sequence[float]) -> tuple[np.ndarray, bool]:
    """Per-case spacing (nominal +-20%) and whether the file is stored flipped."""
    return np.asarray(spacing, float) * rng.uniform(0.8, 1.2, 3), bool(rng.random() < 0.5)


def generate_msd_segmentation_sample(
    output_dir: str | os.PathLike,
    num_training: int = 24,
    num_test: int = 4,
    image_size: Sequence[int] = (96, 96, 64),
    spacing: Sequence[float] = (1.5, 1.5, 2.0),
    modality: str = "CT",
    seed: int = 0,
) -> Path:
    """Write a synthetic MSD segmentation task (organ labels 1-3) and return its ``dataset.json``.

    Args:
        output_dir: task folder (created).
        num_training: labelled cases in ``imagesTr`` / ``labelsTr``.
        num_test: unlabelled cases in ``imagesTs``.
        image_size: voxels per axis at the nominal ``spacing``; each case's spacing varies by +-20%.
        spacing: nominal voxel size in mm.
        modality: ``"CT"`` or ``"MRI"``.
        seed: everything is deterministic given the seed.
    """
    root = Path(output_dir)
    rng = np.random.default_rng(seed)
    fov = np.asarray(image_size, float) * np.asarray(spacing, float)
    training, test = [], []
    for i in range(num_training + num_test):
        case_spacing, flip = _case_geometry(rng, spacing)
        phantom = draw_phantom(fov, case_spacing, rng, modality=modality, flip_xy=flip)
        name = f"case_{i:03d}.nii.gz"
        if i < num_training:
            _save_image(phantom.image, phantom.affine, root / "imagesTr" / name)
            save_nifti(phantom.label, phantom.affine, root / "labelsTr" / name, compresslevel=1)
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        else:
            _save_image(phantom.image, phantom.affine, root / "imagesTs" / name)
            test.append(f"./imagesTs/{name}")
    dataset = {
        "name": "SyntheticAbdomen",
        "description": f"medzoo synthetic abdominal {modality} phantoms (seed {seed}); not real patients",
        "tensorImageSize": "3D",
        "modality": {"0": modality},
        "labels": {str(k): v for k, v in ORGAN_LABELS.items()},
        "numTraining": num_training,
        "numTest": num_test,
        "training": training,
        "test": test,
    }
    atomic_write_text(root / "dataset.json", json.dumps(dataset, indent=2) + "\n")
    return root / "dataset.json"


def generate_lesion_classification_sample(
    output_dir: str | os.PathLike,
    num_training: int = 60,
    num_test: int = 6,
    image_size: Sequence[int] = (64, 64, 48),
    spacing: Sequence[float] = (2.0, 2.0, 2.5),
    modality: str = "CT",
    num_classes: int = 3,
    seed: int = 0,
) -> Path:
    """Write synthetic volumes with a volume-level lesion class, in MSD layout, and return ``dataset.json``.

    Classes are balanced and come from :data:`LESION_CLASSES`: with ``num_classes=3`` no lesion / cyst / hyperdense
    lesion; with ``num_classes=2`` no lesion / lesion (either kind). ``training`` entries are ``{"image", "label"}``
    with an integer label; ``test`` lists unlabelled images as in MSD.
    """
    if num_classes not in (2, 3):
        raise ValueError(f"num_classes must be 2 (binary) or 3, got {num_classes}")
    root = Path(output_dir)
    rng = np.random.default_rng(seed)
    fov = np.asarray(image_size, float) * np.asarray(spacing, float)
    names = ["no_lesion", "lesion"] if num_classes == 2 else [LESION_CLASSES[c] for c in range(3)]
    training, test = [], []
    for i in range(num_training + num_test):
        target = i % num_classes
        if target == 0:
            kind = None
        elif num_classes == 3:
            kind = LESION_CLASSES[target]
        else:
            kind = LESION_CLASSES[int(rng.integers(1, 3))]
        case_spacing, flip = _case_geometry(rng, spacing)
        phantom = draw_phantom(fov, case_spacing, rng, modality=modality, flip_xy=flip, lesion=kind)
        name = f"case_{i:03d}.nii.gz"
        folder = "imagesTr" if i < num_training else "imagesTs"
        _save_image(phantom.image, phantom.affine, root / folder / name)
        if i < num_training:
            training.append({"image": f"./{folder}/{name}", "label": target})
        else:
            test.append(f"./{folder}/{name}")
    dataset = {
        "name": "SyntheticLiverLesion",
        "description": f"medzoo synthetic abdominal {modality} phantoms with a volume-level lesion class (seed {seed})",
        "tensorImageSize": "3D",
        "modality": {"0": modality},
        "labels": {str(k): v for k, v in enumerate(names)},
        "numTraining": num_training,
        "numTest": num_test,
        "training": training,
        "test": test,
    }
    atomic_write_text(root / "dataset.json", json.dumps(dataset, indent=2) + "\n")
    return root / "dataset.json"
