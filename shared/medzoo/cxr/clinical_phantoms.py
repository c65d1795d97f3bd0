"""Synthetic chest X-rays in the NIH ChestX-ray14 layout whose findings depend on the clinical fields as well.

:func:`generate_nih_clinical_sample` writes the layout of :func:`medzoo.cxr.synthetic.generate_nih_sample` (same
``Data_Entry_2017.csv`` columns, split lists and PNGs, drawn by :func:`~medzoo.cxr.synthetic.render_radiograph`), with
two findings tied to the clinical columns:

- **Cardiomegaly depends on the view**: the heart of a patient with Cardiomegaly is drawn 1.3-1.4x wider, and an
  ``AP`` image magnifies the heart by another 1.3-1.4x (the phantom exaggerates the real AP magnification). A normal
  heart on an AP image is then as wide as an enlarged one on a PA image: only the view tells them apart, so an
  image-only network cannot, and a network that also reads ``View Position`` can;
- **Emphysema depends on age**: its probability rises with ``Patient Age`` (logistic, centred at 55 years).

The other findings are drawn as in the plain sample. ``Patient Age`` and ``Patient Gender`` are blank in
``missing_probability`` of the rows each (the real NIH file has no blanks; the blanks exercise the missing-value
inputs). Synthetic images test pipelines and show what fusion can learn; they say nothing about real radiographs.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

import numpy as np

from medzoo.cxr.synthetic import (
    DrawnImage,
    allowed_findings,
    check_probabilities,
    draw_findings,
    render_radiograph,
    write_nih_sample,
)

__all__ = ["generate_nih_clinical_sample", "AP_MAGNIFICATION", "CARDIOMEGALY_WIDENING"]

#: Range of the heart's widening by Cardiomegaly, and by an AP view.
CARDIOMEGALY_WIDENING: tuple[float, float] = (1.3, 1.4)
AP_MAGNIFICATION: tuple[float, float] = (1.3, 1.4)


def _emphysema_probability(age: float, base: float) -> float:
    """Twice ``base`` times a logistic of age centred at 55 years (scale 8 years)."""
    return float(min(1.0, 2.0 * base / (1.0 + np.exp(-(age - 55.0) / 8.0))))


def generate_nih_clinical_sample(
    output_dir: str | os.PathLike,
    num_patients: int = 60,
    images_per_patient: int = 6,
    image_size: int = 256,
    seed: int = 0,
    test_fraction: float = 0.2,
    finding_probability: float = 0.14,
    normal_probability: float = 0.15,
    ap_probability: float = 0.4,
    missing_probability: float = 0.05,
    findings: Collection[str] | None = None,
) -> Path:
    """Write the clinical phantom sample (see the module docstring) into ``output_dir``.

    Args:
        output_dir: folder to write into; created if needed.
        num_patients: number of patients, at least 2; whole patients go to ``test_list.txt``.
        images_per_patient: images per patient, at least 1.
        image_size: side of the square 8-bit PNGs, at least 32.
        seed: random seed; the same arguments give the same files.
        test_fraction: fraction of the patients in ``test_list.txt``, in (0, 1).
        finding_probability: probability of each finding (Emphysema: its age-dependent base) in a non-normal image.
        normal_probability: probability that an image has no finding.
        ap_probability: probability that an image is ``AP`` (else ``PA``).
        missing_probability: probability that a row's ``Patient Age`` is blank, and (independently) its
            ``Patient Gender``.
        findings: the labels that may be drawn (default: all 14), e.g. ``["Cardiomegaly"]``.

    Returns:
        ``output_dir``, ready for ``prepare_nih(output_dir, ..., clinical=True)``.
    """
    allowed = allowed_findings(findings)
    check_probabilities(
        finding_probability=finding_probability,
        normal_probability=normal_probability,
        ap_probability=ap_probability,
        missing_probability=missing_probability,
    )

    def draw_image(rng: np.random.Generator, patient: dict[str, float], age: int, sex: str) -> DrawnImage:
        view = "AP" if rng.random() < ap_probability else "PA"
        drawn = draw_findings(
            rng,
            allowed,
            normal_probability,
            lambda name: (
                _emphysema_probability(age, finding_probability) if name == "Emphysema" else finding_probability
            ),
        )
        widening = 1.0
        if "Cardiomegaly" in drawn:
            widening *= rng.uniform(*CARDIOMEGALY_WIDENING)
        if view == "AP":
            widening *= rng.uniform(*AP_MAGNIFICATION)
        shown = {**patient, "heart_ax": patient["heart_ax"] * widening}
        shown["heart_ay"] = patient["heart_ay"] * (1.0 + 0.3 * (widening - 1.0))
        pixels = render_radiograph(rng, image_size, shown, drawn - {"Cardiomegaly"})
        shown_age = "" if rng.random() < missing_probability else age
        shown_sex = "" if rng.random() < missing_probability else sex
        return DrawnImage(pixels, drawn, shown_age, shown_sex, view)

    return write_nih_sample(output_dir, draw_image, num_patients, images_per_patient, image_size, seed, test_fraction)
