"""Synthetic cine and LGE cardiac MR phantoms written in the cardiac on-disk layout, with every mask.

The sample lets the three cardiac bundles run, train and be evaluated without the real data set, and gives the
ground truth that shows they learn. It is written exactly like the real layout, so the same preparer
(:func:`medzoo.cmr.datasets.prepare_cmr`) reads both::

    <output_dir>/
        images/cmr/<case>/slice_<k>.nii.gz          cine, (T, H, W) int16
        images/lge/<case>/slice_<k>.nii.gz          LGE, (H, W) int16
        labels/cmr/cmr_Myo_mask/<case>.nii.gz       myocardium on the cine end-diastole frame, (S, H, W) uint8
        labels/lge/lge_Myo_labels/<case>.nii.gz     myocardium on the LGE slices, (S, H, W) uint8
        labels/lge/lge_MI_labels/<case>.nii.gz      infarct (scar) on the LGE slices, (S, H, W) uint8
        labels/cmr/cmr_MI_labels/<case>.nii.gz      infarct on the cine end-diastole frame, (S, H, W) uint8

``cmr_MI_labels`` is the target of the MI segmentation bundle. A real data set does not have it: there it is the LGE
infarct label carried onto the cine frame by the registration bundle (see its docs); the phantom writes the exact one.

Each slice is a short-axis left ventricle: a bright blood pool inside a dark myocardial ring, surrounded by textured
tissue inside a body outline. Through the cycle (frame 0 end-diastole, frame T//2 end-systole) the ring contracts
radially and, because its area is conserved, thickens. A scar sector (random angle, width and transmurality) moves
much less and is slightly thinner. Each frame has Rician-like noise; each case its own gain and a smooth bias field.
Intensities are stored as integers (up to about 1700), as scanners store magnitude images; float32 noise would also
cost twice the bytes to decompress.
The LGE slice shows the end-diastolic anatomy with LGE contrast (nulled myocardium, bright scar, grey blood) and a
small random rotation and shift against the cine, so registration has work to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter, map_coordinates

from medzoo.io_checks import save_nifti

__all__ = ["SlicePhantom", "generate_cmr_sample", "render_slice"]

#: In-plane pixel spacing (mm) of the phantom's NIfTI headers.
_SPACING_MM: float = 1.5
_CINE_INTENSITY = {"blood": 0.9, "myocardium": 0.3, "tissue": 0.5, "air": 0.05}
_LGE_INTENSITY = {"blood": 0.55, "myocardium": 0.12, "scar": 0.95, "tissue": 0.35, "air": 0.05}


@dataclass
class SlicePhantom:
    """Geometry of one short-axis slice, in pixels and radians.

    ``endo``/``epi``: end-diastolic endocardial and epicardial radii; ``contraction``: fractional shortening of the
    endocardial radius at end-systole in healthy myocardium; ``scar_angle``/``scar_width``: centre and full width of
    the scar sector; ``scar_depth``: transmural fraction of the wall that is scar, from the endocardium;
    ``scar_motion``: residual motion of the scar sector (0 = akinetic, 1 = normal).
    """

    size: int
    centre: tuple[float, float]
    endo: float
    epi: float
    contraction: float
    scar_angle: float
    scar_width: float
    scar_depth: float
    scar_motion: float


def _scar_weight(theta: np.ndarray, phantom: SlicePhantom) -> np.ndarray:
    """Smooth sector indicator in [0, 1]: 1 inside the scar sector, raised-cosine edges ~15 degrees wide."""
    delta = np.abs(np.angle(np.exp(1j * (theta - phantom.scar_angle))))
    edge = np.deg2rad(15.0)
    inner = phantom.scar_width / 2
    ramp = np.clip((delta - inner) / edge, 0.0, 1.0)
    return 0.5 * (1 + np.cos(np.pi * ramp))


def render_slice(phantom: SlicePhantom, frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Render the cine frames and the end-diastolic masks of one slice.

    Motion is radial and area-preserving: a material point at end-diastolic radius ``r0`` sits at time ``t`` at
    ``r = sqrt(r0^2 - k(t, theta))`` with ``k = c(t) * (endo^2 - (endo * (1 - a(theta)))^2)``, ``c(t) = (1 - cos 2 pi
    t / T) / 2`` and ``a(theta)`` the local contraction (reduced in the scar sector). Rendering pulls back each pixel to
    ``r0 = sqrt(r^2 + k)``.

    Returns:
        ``cine`` (T, H, W) float32 without noise; ``myo``, ``scar`` (H, W) uint8 end-diastolic masks; and, for
        drawing the LGE of the same anatomy, ``texture`` (H, W) the tissue texture, ``body`` (H, W) bool the body
        outline, ``r`` (H, W) the distance to the ventricle's centre.
    """
    n = phantom.size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    dy, dx = yy - phantom.centre[0], xx - phantom.centre[1]
    r = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    scar_w = _scar_weight(theta, phantom)
    thinning = 1.0 - 0.25 * scar_w  # the scar wall is thinner
    epi = np.sqrt(phantom.endo**2 + (phantom.epi**2 - phantom.endo**2) * thinning)
    amplitude = phantom.contraction * (1.0 - (1.0 - phantom.scar_motion) * scar_w)
    k_es = phantom.endo**2 - (phantom.endo * (1.0 - amplitude)) ** 2
    texture = gaussian_filter(rng.standard_normal((n, n)), sigma=n / 24)
    texture = 0.12 * texture / (np.abs(texture).max() + 1e-8)
    body = (dy / (0.46 * n)) ** 2 + (dx / (0.42 * n)) ** 2 < 1.0
    cine = np.empty((frames, n, n), dtype=np.float32)
    for t in range(frames):
        c = 0.5 * (1.0 - np.cos(2.0 * np.pi * t / frames))
        r0 = np.sqrt(r**2 + c * k_es)
        y0 = phantom.centre[0] + r0 * np.sin(theta)
        x0 = phantom.centre[1] + r0 * np.cos(theta)
        tissue_tex = map_coordinates(texture, [y0, x0], order=1, mode="nearest")
        frame = np.where(body, _CINE_INTENSITY["tissue"] + tissue_tex, _CINE_INTENSITY["air"])
        frame = np.where(r0 < epi, _CINE_INTENSITY["myocardium"] + 0.3 * tissue_tex, frame)
        frame = np.where(r0 < phantom.endo, _CINE_INTENSITY["blood"], frame)
        cine[t] = frame
    myo = (r >= phantom.endo) & (r < epi)
    depth = phantom.endo + phantom.scar_depth * (epi - phantom.endo)
    scar = myo & (r < depth) & (scar_w > 0.5)
    return {
        "cine": cine,
        "myo": myo.astype(np.uint8),
        "scar": scar.astype(np.uint8),
        "texture": texture,
        "body": body,
        "r": r,
    }


def _lge_slice(phantom: SlicePhantom, rendered: dict, rng: np.random.Generator, max_shift: float, max_rotation: float):
    """The LGE image and masks of a slice, misaligned against the cine by a random rotation and shift."""
    n = phantom.size
    lge = np.where(rendered["body"], _LGE_INTENSITY["tissue"] + 0.5 * rendered["texture"], _LGE_INTENSITY["air"])
    myo, scar = rendered["myo"].astype(bool), rendered["scar"].astype(bool)
    lge = np.where(rendered["r"] < phantom.endo, _LGE_INTENSITY["blood"], lge)
    lge = np.where(myo, _LGE_INTENSITY["myocardium"], lge)
    lge = np.where(scar, _LGE_INTENSITY["scar"], lge)
    angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
    shift = rng.uniform(-max_shift, max_shift, size=2) * n
    cos, sin = np.cos(angle), np.sin(angle)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    cy, cx = phantom.centre
    # LGE pixel p shows the cine-frame anatomy at R (p - centre - shift) + centre
    y_src = cos * (yy - cy - shift[0]) - sin * (xx - cx - shift[1]) + cy
    x_src = sin * (yy - cy - shift[0]) + cos * (xx - cx - shift[1]) + cx

    def warp(img, order):
        return map_coordinates(img.astype(np.float64), [y_src, x_src], order=order, mode="nearest")

    return warp(lge, 1), warp(myo, 0).astype(np.uint8), warp(scar, 0).astype(np.uint8)


def _noisy(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (Rician, as in MR magnitude images)."""
    real = image + rng.normal(0.0, sigma, image.shape)
    imag = rng.normal(0.0, sigma, image.shape)
    return np.hypot(real, imag).astype(np.float32)


def _affine(rng: np.random.Generator) -> np.ndarray:
    """A per-case header: leading axis (frame or slice) 8 mm, in-plane ``_SPACING_MM``, a random origin."""
    affine = np.diag([8.0, _SPACING_MM, _SPACING_MM, 1.0])
    affine[:3, 3] = rng.uniform(-100, 100, size=3).round(2)
    return affine


def _random_slice(size: int, slice_pos: float, rng: np.random.Generator) -> SlicePhantom:
    """Slice geometry; ``slice_pos`` in [0, 1] goes from base (larger ventricle) to apex (smaller)."""
    scale = 1.0 - 0.3 * slice_pos
    endo = size * rng.uniform(0.13, 0.16) * scale
    return SlicePhantom(
        size=size,
        centre=(size / 2 + rng.uniform(-0.05, 0.05) * size, size / 2 + rng.uniform(-0.05, 0.05) * size),
        endo=endo,
        epi=endo + size * rng.uniform(0.07, 0.09),
        contraction=rng.uniform(0.3, 0.4),
        scar_angle=rng.uniform(-np.pi, np.pi),
        scar_width=np.deg2rad(rng.uniform(60, 110)),
        scar_depth=rng.uniform(0.6, 1.0),
        scar_motion=rng.uniform(0.0, 0.15),
    )


def generate_cmr_sample(
    output_dir: str | os.PathLike,
    num_cases: int = 20,
    slices_per_case: int = 3,
    frames: int = 12,
    image_size: int = 96,
    noise: float = 0.006,
    max_shift: float = 0.04,
    max_rotation: float = 8.0,
    seed: int = 0,
) -> Path:
    """Write ``num_cases`` synthetic cases in the cardiac layout (see the module docstring) and return the folder.

    Args:
        output_dir: dataset folder (created).
        num_cases: cases (patients), named ``case_000``, ``case_001``, ...
        slices_per_case: short-axis slices per case, base to apex.
        frames: cine frames per slice (T >= 2; end-systole is frame T // 2).
        image_size: H = W in pixels.
        noise: noise standard deviation relative to the blood intensity.
        max_shift: largest LGE-vs-cine shift per axis, as a fraction of the image size.
        max_rotation: largest LGE-vs-cine rotation in degrees.
        seed: same seed -> same files.
    """
    if frames < 2:
        raise ValueError(f"frames must be >= 2 (end-diastole and end-systole), got {frames}")
    if num_cases < 1 or slices_per_case < 1:
        raise ValueError("num_cases and slices_per_case must be >= 1")
    root = Path(output_dir)
    rng = np.random.default_rng(seed)
    for case_index in range(num_cases):
        case = f"case_{case_index:03d}"
        affine = _affine(rng)
        gain = rng.uniform(0.7, 1.3) * 1000.0
        bias = gaussian_filter(rng.standard_normal((image_size, image_size)), sigma=image_size / 4)
        bias = 1.0 + 0.15 * bias / (np.abs(bias).max() + 1e-8)
        masks = {name: [] for name in ("cmr_myo", "cmr_mi", "lge_myo", "lge_mi")}
        for k in range(slices_per_case):
            phantom = _random_slice(image_size, k / max(slices_per_case - 1, 1), rng)
            rendered = render_slice(phantom, frames, rng)
            cine = _noisy(rendered["cine"] * bias, noise, rng) * gain
            lge, lge_myo, lge_scar = _lge_slice(phantom, rendered, rng, max_shift, max_rotation)
            lge = _noisy(lge * bias, noise, rng) * gain * rng.uniform(0.8, 1.2)
            save_nifti(np.rint(cine).astype(np.int16), affine, root / "images" / "cmr" / case / f"slice_{k:02d}.nii.gz")
            save_nifti(np.rint(lge).astype(np.int16), affine, root / "images" / "lge" / case / f"slice_{k:02d}.nii.gz")
            masks["cmr_myo"].append(rendered["myo"])
            masks["cmr_mi"].append(rendered["scar"])
            masks["lge_myo"].append(lge_myo)
            masks["lge_mi"].append(lge_scar)
        for name, folder in (
            ("cmr_myo", "labels/cmr/cmr_Myo_mask"),
            ("cmr_mi", "labels/cmr/cmr_MI_labels"),
            ("lge_myo", "labels/lge/lge_Myo_labels"),
            ("lge_mi", "labels/lge/lge_MI_labels"),
        ):
            save_nifti(np.stack(masks[name]).astype(np.uint8), affine, root / folder / f"{case}.nii.gz")
    return root
