"""Synthetic chest X-rays written in the NIH ChestX-ray14 on-disk layout, with a learnable pattern per finding.

The sample lets every chest X-ray bundle run, train and be evaluated out of the box, without the real data set. It is
written exactly like the real download, so the same preparer (:func:`medzoo.cxr.datasets.prepare_nih`) reads both::

    <output_dir>/
        Data_Entry_2017.csv     Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,
                                View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]
        train_val_list.txt      one image file name a line
        test_list.txt           one image file name a line (whole patients, disjoint from train_val)
        images/00000001_000.png 8-bit grayscale, ``image_size`` x ``image_size``

Each image is a frontal chest radiograph phantom: body outline, dark lung fields with vessel markings, bright
mediastinum, spine, heart, ribs and clavicles, gastric bubble, noise, and a random window/gamma per image. A patient
keeps their anatomy across follow-ups. Each of the 14 :data:`~medzoo.cxr.labels.CHEXNET_LABELS` adds its own pattern,
with random side, position and strength (painted by :mod:`medzoo.cxr.phantom_findings` on the
:class:`~medzoo.cxr.phantom_scene.Scene` this module draws the anatomy on):

- Atelectasis: smaller lung with an elevated hemidiaphragm, mediastinal shift toward it, plate-like band opacities;
- Cardiomegaly: heart shadow 1.6-1.8x wider;
- Effusion: dense fluid at a lung base with a lateral meniscus, sometimes bilateral;
- Infiltration: patchy ill-defined opacities in both lungs;
- Mass: one large lobulated well-defined opacity; Nodule: two to four small sharp bright spots;
- Pneumonia: ill-defined opacity across the middle zone of one lung;
- Pneumothorax: apical/lateral air without markings behind a thin pleural line;
- Consolidation: dense upper-lobe opacity with a sharp lower border (fissure);
- Edema: bilateral perihilar haze with Kerley B lines; Emphysema: large hyperlucent lungs, flat diaphragm;
- Fibrosis: coarse reticular net in the lower zones; Pleural_Thickening: bright lateral pleural rind;
- Hernia: gas bubble with an air-fluid level behind the heart.

Each finding is in about 12% of the images, several findings may share an image, and about a quarter of the images
are ``No Finding``. The ground truth is in ``Finding Labels``. Synthetic images are for testing pipelines and showing
that training learns; they say nothing about performance on real radiographs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from medzoo.cxr.labels import CHEXNET_LABELS
from medzoo.cxr.phantom_findings import FINDINGS
from medzoo.cxr.phantom_scene import Scene, disk, smooth_noise, soft
from medzoo.fileio import atomic_write_text

__all__ = [
    "DrawnImage",
    "NIH_CSV_HEADER",
    "allowed_findings",
    "check_probabilities",
    "draw_findings",
    "generate_nih_sample",
    "new_patient",
    "render_phantom",
    "render_radiograph",
    "write_nih_sample",
]

#: Header line of the real ``Data_Entry_2017.csv``; two names contain a comma, so they span two fields each.
NIH_CSV_HEADER: str = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)

#: Probability of each finding in an image that is not drawn as normal.
_FINDING_PROBABILITY: float = 0.14
#: Probability that an image is drawn without any finding.
_NORMAL_PROBABILITY: float = 0.15
#: Field of view of the phantom, used for the pixel spacing column.
_FIELD_OF_VIEW_MM: float = 400.0


def new_patient(rng: np.random.Generator) -> dict[str, float]:
    """Anatomy a patient keeps across follow-ups."""
    return {
        "body_w": rng.uniform(0.82, 0.95),
        "lung_cx": rng.uniform(0.33, 0.38),
        "lung_cy": rng.uniform(-0.12, -0.04),
        "lung_ax": rng.uniform(0.22, 0.26),
        "lung_ay": rng.uniform(0.55, 0.62),
        "dome_h": rng.uniform(0.08, 0.14),
        "heart_cx": rng.uniform(0.04, 0.1),
        "heart_cy": rng.uniform(0.12, 0.16),
        "heart_ax": rng.uniform(0.2, 0.24),
        "heart_ay": rng.uniform(0.2, 0.23),
        "rib_spacing": rng.uniform(0.14, 0.17),
        "rib_phase": rng.uniform(0.0, 2 * np.pi),
        "gastric_bubble": float(rng.random() < 0.5),
    }


def _anatomy(rng: np.random.Generator, size: int, patient: dict[str, float], findings: set[str]) -> Scene:
    """Draw the normal anatomy, with the shape changes of Cardiomegaly, Emphysema and Atelectasis."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    scale, dx, dy = rng.uniform(0.94, 1.06), rng.normal(0, 0.025), rng.normal(0, 0.025)
    s = Scene(x=((coords - dx) / scale)[None, :], y=((coords - dy) / scale)[:, None], dens=np.empty(0))
    x, y = s.x, s.y

    neck = 0.22 + (patient["body_w"] - 0.22) * soft(y + 0.8, 0.08)
    body = soft(neck - np.abs(x), 0.03)
    s.dens = 0.04 + 0.42 * body

    lung_scale, dome_h = 1.0, patient["dome_h"]
    if "Emphysema" in findings:
        lung_scale, dome_h = rng.uniform(1.08, 1.14), dome_h * 0.3
    shift = 0.0  # the mediastinum moves toward a collapsed lung
    if "Atelectasis" in findings:
        s.collapsed_side = int(rng.integers(2))
        shift = (2 * s.collapsed_side - 1) * rng.uniform(0.05, 0.08)
    for side, sign in enumerate((-1.0, 1.0)):
        cx, cy = sign * patient["lung_cx"], patient["lung_cy"]
        ax, ay = patient["lung_ax"] * lung_scale, patient["lung_ay"] * lung_scale
        angle = cy + 0.8 * ay
        if side == s.collapsed_side:
            ax, angle = ax * 0.9, angle - 0.25
        r = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
        dome = angle - dome_h * np.clip(1.0 - ((x - cx) / ax) ** 2, 0.0, 1.0)
        lung = soft((1.0 - r) * ax, 0.012) * soft(dome - y, 0.012)
        s.lungs.append(lung)
        s.lung_geom.append((cx, cy, ax, ay))
        s.dens -= (0.3 + 0.05 * (y - cy) / ay) * lung

    hax, hay = patient["heart_ax"], patient["heart_ay"]
    if "Cardiomegaly" in findings:
        hax, hay = hax * rng.uniform(1.6, 1.8), hay * rng.uniform(1.1, 1.2)
    s.heart = (patient["heart_cx"] + shift, patient["heart_cy"], hax, hay)
    heart = soft((1.0 - np.sqrt(((x - s.heart[0]) / hax) ** 2 + ((y - s.heart[1]) / hay) ** 2)) * hay, 0.012)
    s.dens += heart * (0.6 - s.dens)
    s.lungs = [lung * (1.0 - heart) for lung in s.lungs]  # the lung behind the heart is hidden
    knob = disk(s, 0.09 + shift, -0.22, 0.065, 0.012)
    s.dens += knob * (0.55 - s.dens)
    if patient["gastric_bubble"]:
        s.dens -= 0.2 * disk(s, 0.3, 0.55, 0.07, 0.015)

    spine = soft(0.055 - np.abs(x), 0.01) * body
    s.dens += spine * (0.1 + 0.04 * np.sin(2 * np.pi * y / 0.09))
    s.dens -= 0.12 * soft(0.028 - np.abs(x - shift), 0.008) * soft(-0.35 - y, 0.03)  # trachea
    return s


def _finish(rng: np.random.Generator, s: Scene, patient: dict[str, float]) -> np.ndarray:
    """Add markings, bones, noise and a random window; return the 8-bit image (H, W)."""
    x, y, size = s.x, s.y, s.dens.shape[0]
    lungs = s.lungs[0] + s.lungs[1]
    hila = np.exp(-((np.abs(x) - 0.15) ** 2 + y**2) / 0.3)
    markings = np.clip(smooth_noise(rng, size, 28), 0.0, None) * hila * lungs * s.marking_gain
    s.dens += 0.05 * markings

    thorax = soft(0.85 - np.abs(x), 0.03) * soft(y + 0.85, 0.03) * soft(0.55 - y, 0.05)
    rib_u = y - 0.3 * np.abs(x) - 0.25 * x**2
    ribs = (0.5 + 0.5 * np.cos(2 * np.pi * rib_u / patient["rib_spacing"] + patient["rib_phase"])) ** 6
    s.dens += ribs * thorax * (0.03 + 0.04 * lungs)
    clavicles = np.exp(-(((y + 0.72 - 0.18 * np.abs(x)) / 0.03) ** 2)) * soft(0.55 - np.abs(x), 0.03)
    s.dens += 0.12 * clavicles * soft(np.abs(x) - 0.08, 0.02)

    s.dens += 0.015 * smooth_noise(rng, size, 4) + 0.015 * rng.standard_normal(s.dens.shape, dtype=np.float32)
    low, high = rng.uniform(0.0, 0.05), rng.uniform(0.7, 0.8)
    img = np.clip((s.dens - low) / (high - low), 0.0, 1.0) ** np.exp(rng.uniform(-0.1, 0.1))
    return np.round(img * 255.0).astype(np.uint8)


def _render_with_masks(
    rng: np.random.Generator, size: int, patient: dict[str, float], findings: set[str]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One synthetic radiograph (size, size) uint8 showing ``findings``, and the region of each finding drawn on the
    scene: a boolean (size, size) mask of where that finding changed the density map by more than half of its largest
    change. Findings that only reshape the anatomy (Cardiomegaly, Emphysema's volume) have no mask."""
    scene = _anatomy(rng, size, patient, findings)
    masks = {}
    for name in CHEXNET_LABELS:
        if name in findings and name in FINDINGS:
            before = scene.dens.copy()
            FINDINGS[name](scene, rng, rng.uniform(0.8, 1.1))
            change = np.abs(scene.dens - before)
            masks[name] = change > 0.5 * change.max()
    return _finish(rng, scene, patient), masks


def render_radiograph(rng: np.random.Generator, size: int, patient: dict[str, float], findings: set[str]) -> np.ndarray:
    """One synthetic radiograph (size, size) uint8 showing ``findings``."""
    return _render_with_masks(rng, size, patient, findings)[0]


def render_phantom(seed: int, size: int, findings: Collection[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One radiograph phantom of a new patient, drawn like the sample's images, with the region of each finding.

    Args:
        seed: random seed of the patient's anatomy, the findings' places and the image's noise and window.
        size: side of the square image, at least 32.
        findings: names from :data:`~medzoo.cxr.labels.CHEXNET_LABELS` to draw.

    Returns:
        The (size, size) uint8 image, and for each finding drawn on the scene (every label but Cardiomegaly, and
        Emphysema, whose changes are of the whole lungs) its boolean (size, size) mask: the pixels where that finding
        changed the density map by more than half of its largest change (e.g. a Mass's blob).
    """
    unknown = set(findings) - set(CHEXNET_LABELS)
    if unknown:
        raise ValueError(f"unknown findings {sorted(unknown)}; use names from CHEXNET_LABELS")
    if size < 32:
        raise ValueError(f"size must be at least 32, got {size}")
    rng = np.random.default_rng(seed)
    return _render_with_masks(rng, size, new_patient(rng), set(findings))


class DrawnImage(NamedTuple):
    """One image of a phantom sample and its ``Data_Entry_2017.csv`` fields: ``pixels`` (H, W) uint8, the findings
    drawn, the age and sex written in the row (``""`` for a blank), the view position (``"PA"`` or ``"AP"``)."""

    pixels: np.ndarray
    findings: set[str]
    age: int | str
    sex: str
    view: str


#: Draws one image of a patient: ``(rng, patient anatomy, age, sex) -> DrawnImage``.
ImageDrawer = Callable[[np.random.Generator, dict[str, float], int, str], DrawnImage]


def allowed_findings(findings: Collection[str] | None) -> set[str]:
    """The labels a sample may draw: ``findings``, or all 14 when None; unknown names are a ``ValueError``."""
    allowed = set(CHEXNET_LABELS if findings is None else findings)
    if allowed - set(CHEXNET_LABELS):
        raise ValueError(f"unknown findings {sorted(allowed - set(CHEXNET_LABELS))}; use names from CHEXNET_LABELS")
    return allowed


def draw_findings(
    rng: np.random.Generator,
    allowed: set[str],
    normal_probability: float,
    chance: Callable[[str], float],
) -> set[str]:
    """The findings of one image: none with ``normal_probability``, else each allowed label with ``chance(label)``
    (one uniform draw per label of :data:`CHEXNET_LABELS`, allowed or not, so the stream does not depend on
    ``allowed``)."""
    if rng.random() < normal_probability:
        return set()
    draws = rng.random(len(CHEXNET_LABELS))
    return {name for name, p in zip(CHEXNET_LABELS, draws) if p < chance(name) and name in allowed}


def check_probabilities(**probabilities: float) -> None:
    """Raise ``ValueError`` naming the first of the keyword arguments outside [0, 1]."""
    for name, value in probabilities.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")


def write_nih_sample(
    output_dir: str | os.PathLike,
    draw_image: ImageDrawer,
    num_patients: int,
    images_per_patient: int,
    image_size: int,
    seed: int,
    test_fraction: float,
) -> Path:
    """Write a phantom sample in the NIH layout (see the module docstring) with ``draw_image`` drawing each image.

    Checks the arguments, splits whole patients between ``train_val_list.txt`` and ``test_list.txt``
    (``test_fraction`` of them, at least one on each side), draws each patient's anatomy, age (18-89) and sex, then
    their ``images_per_patient`` follow-ups in order, all from one generator seeded with ``seed``. Returns
    ``output_dir`` as a :class:`~pathlib.Path`.
    """
    if num_patients < 2:
        raise ValueError(f"num_patients must be at least 2 (train_val and test), got {num_patients}")
    if images_per_patient < 1:
        raise ValueError(f"images_per_patient must be at least 1, got {images_per_patient}")
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32, got {image_size}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")

    root = Path(output_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    num_test = min(max(1, round(num_patients * test_fraction)), num_patients - 1)
    test_patients = set((rng.permutation(num_patients)[:num_test] + 1).tolist())
    spacing = f"{_FIELD_OF_VIEW_MM / image_size:.3f}"

    rows, train_val, test = [], [], []
    for patient_id in range(1, num_patients + 1):
        patient = new_patient(rng)
        age, sex = int(rng.integers(18, 90)), "MF"[int(rng.integers(2))]
        for follow_up in range(images_per_patient):
            drawn = draw_image(rng, patient, age, sex)
            name = f"{patient_id:08d}_{follow_up:03d}.png"
            Image.fromarray(drawn.pixels).save(root / "images" / name)
            labels = "|".join(n for n in CHEXNET_LABELS if n in drawn.findings) or "No Finding"
            size = (image_size, image_size)
            rows.append(
                [name, labels, follow_up, patient_id, drawn.age, drawn.sex, drawn.view, *size, spacing, spacing]
            )
            (test if patient_id in test_patients else train_val).append(name)

    lines = [NIH_CSV_HEADER + "\n"] + [",".join(str(v) for v in row) + "\n" for row in rows]
    atomic_write_text(root / "Data_Entry_2017.csv", "".join(lines))
    atomic_write_text(root / "train_val_list.txt", "".join(f"{n}\n" for n in train_val))
    atomic_write_text(root / "test_list.txt", "".join(f"{n}\n" for n in test))
    return root


def generate_nih_sample(
    output_dir: str | os.PathLike,
    num_patients: int = 40,
    images_per_patient: int = 8,
    image_size: int = 256,
    seed: int = 0,
    test_fraction: float = 0.2,
    findings: Collection[str] | None = None,
    finding_probability: float = _FINDING_PROBABILITY,
    normal_probability: float = _NORMAL_PROBABILITY,
) -> Path:
    """Write a synthetic ChestX-ray14 sample in the real NIH layout (see the module docstring).

    Args:
        output_dir: folder to write into; created if needed. The CSV and lists are replaced, images of the same name
            overwritten.
        num_patients: number of patients, at least 2 (one for train_val, one for test).
        images_per_patient: follow-up images per patient, at least 1.
        image_size: side of the square 8-bit grayscale PNGs, at least 32.
        seed: random seed; the same arguments give byte-identical files (same platform and library versions).
        test_fraction: fraction of the patients listed in ``test_list.txt``, in (0, 1).
        findings: the labels that may be drawn (default: all 14); the others are never present. E.g. ``["Mass"]`` with
            ``finding_probability=0.5, normal_probability=0`` gives a sample where half of the images show a mass.
        finding_probability: probability of each allowed finding in an image not drawn as normal.
        normal_probability: probability that an image is drawn without any finding.

    Returns:
        ``output_dir`` as a :class:`~pathlib.Path`, ready for :func:`medzoo.cxr.datasets.prepare_nih`.

    Example::

        root = generate_nih_sample("/tmp/nih_sample", num_patients=10, images_per_patient=4)
        datalist = prepare_nih(root, root / "datalist.json")
    """
    allowed = allowed_findings(findings)
    check_probabilities(finding_probability=finding_probability, normal_probability=normal_probability)

    def draw_image(rng: np.random.Generator, patient: dict[str, float], age: int, sex: str) -> DrawnImage:
        drawn = draw_findings(rng, allowed, normal_probability, lambda _: finding_probability)
        pixels = render_radiograph(rng, image_size, patient, drawn)
        return DrawnImage(pixels, drawn, age, sex, "PA" if rng.random() < 0.7 else "AP")

    return write_nih_sample(output_dir, draw_image, num_patients, images_per_patient, image_size, seed, test_fraction)
