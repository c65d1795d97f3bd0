"""Geometry on plain arrays, for loaders that bring an image to the network's grid as they read it.

MONAI's ``Orientation``, ``Spacing`` and ``ResizeWithPadOrCrop`` do the same on MetaTensors and record each step for
inversion; that bookkeeping, and ``Spacing``'s dense sampling grid, cost more than the work itself on small images
(loading a sample volume onto a 64x64x48 grid took 2.9x as long as with these: ``docs/volume_loading.md``). These
functions give MONAI's results (tested against its transforms) for loaders that need no inversion, or that undo the
fit themselves (:func:`center_restore`):

- :func:`center_fit` / :func:`center_restore`: crop or pad about the centre, MONAI's ``ResizeWithPadOrCrop`` offsets;
- :func:`reorient`: flip and transpose a volume to axis codes such as ``"RAS"``, as ``Orientation``;
- :func:`resample_to_spacing`: linear resampling to a voxel spacing, as ``Spacing(mode="bilinear")`` (border padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import compute_shape_offset, zoom_affine
from nibabel import orientations

__all__ = ["center_fit", "center_restore", "reorient", "resample_to_spacing"]


def _centre_offset(source: int, target: int) -> int:
    """Where a centred fit of ``source`` pixels into ``target`` starts: the crop start in the source (source > target)
    or the padding before it (source < target); MONAI's ``CenterSpatialCrop`` / symmetric ``SpatialPad`` offsets."""
    return source // 2 - target // 2 if source > target else (target - source) // 2


def _crop_or_pad(image: np.ndarray, size: Sequence[int], offsets: Sequence[int], mode: str) -> np.ndarray:
    """Bring the last ``len(size)`` axes of ``image`` to ``size``: an axis that is too long is cropped from its offset,
    one that is too short is padded with its offset before it (``numpy.pad`` ``mode``)."""
    lead = image.ndim - len(size)
    crop, pad = [slice(None)] * image.ndim, [(0, 0)] * image.ndim
    for axis, (have, want, offset) in enumerate(zip(image.shape[lead:], size, offsets), start=lead):
        if have > want:
            crop[axis] = slice(offset, offset + want)
        elif have < want:
            pad[axis] = (offset, want - have - offset)
    image = image[tuple(crop)]
    return np.pad(image, pad, mode=mode) if any(p != (0, 0) for p in pad) else image


def center_fit(image: np.ndarray, spatial_size: Sequence[int], mode: str = "constant") -> np.ndarray:
    """Crop or pad the last ``len(spatial_size)`` axes of ``image`` about the centre to ``spatial_size``.

    Args:
        image: (..., *S) array, e.g. a (T, H, W) cine slice or a (C, X, Y, Z) volume.
        spatial_size: target S' of the last axes, e.g. (H', W') or (X', Y', Z').
        mode: ``numpy.pad`` mode of the padded border, ``"constant"`` (zeros) or ``"edge"``.

    Returns:
        (..., *S'), the same array when it already has that size.
    """
    size = [int(n) for n in spatial_size]
    offsets = [_centre_offset(have, want) for have, want in zip(image.shape[image.ndim - len(size) :], size)]
    return _crop_or_pad(image, size, offsets, mode)


def center_restore(image: np.ndarray, source_size: Sequence[int]) -> np.ndarray:
    """Undo :func:`center_fit`: bring (..., *S') back to the ``source_size`` S it was fitted from.

    What the fit cropped away comes back as zeros, what it padded is cropped off.
    """
    size = [int(n) for n in source_size]
    offsets = [_centre_offset(source, fitted) for fitted, source in zip(image.shape[image.ndim - len(size) :], size)]
    return _crop_or_pad(image, size, offsets, "constant")


def reorient(volume: np.ndarray, affine: np.ndarray, axcodes: str = "RAS") -> tuple[np.ndarray, np.ndarray]:
    """Flip and transpose the first three axes of ``volume`` so that they run along ``axcodes``.

    Args:
        volume: (X, Y, Z, ...) array, e.g. as stored in a NIfTI file.
        affine: its 4x4 voxel-to-world matrix.
        axcodes: the target direction of each axis, e.g. ``"RAS"`` (left to Right, posterior to Anterior, inferior
            to Superior), as MONAI's ``Orientation(axcodes=...)`` and nibabel's axis codes.

    Returns:
        The reoriented (X', Y', Z', ...) array (a view where possible) and its affine.
    """
    transform = orientations.ornt_transform(orientations.io_orientation(affine), orientations.axcodes2ornt(axcodes))
    reoriented = orientations.apply_orientation(volume, transform)
    return reoriented, affine @ orientations.inv_ornt_aff(transform, volume.shape[:3])


def resample_to_spacing(
    volume: torch.Tensor, affine: np.ndarray, pixdim: Sequence[float]
) -> tuple[torch.Tensor, np.ndarray]:
    """Resample a volume to the voxel spacing ``pixdim`` by linear interpolation, keeping its axes' directions.

    The output grid is MONAI's ``Spacing(pixdim)`` grid (same shape and affine, from MONAI's ``zoom_affine`` and
    ``compute_shape_offset``); values outside the input take the nearest border voxel's, as MONAI's default border
    padding. On that grid each output axis samples one input axis, so the trilinear interpolation is done one axis at
    a time: three 1D interpolations instead of ``Spacing``'s dense sampling grid, the most shrinking axis first. Working
    memory beyond ``volume``: two arrays of the first interpolation's output size.

    Args:
        volume: (X, Y, Z) float tensor.
        affine: its 4x4 voxel-to-world matrix.
        pixdim: target spacing (mm) of the three axes, each > 0.

    Returns:
        The (X', Y', Z') resampled float32 tensor and its affine.
    """
    if len(pixdim) != 3 or min(pixdim) <= 0:
        raise ValueError(f"pixdim must be three spacings > 0, got {pixdim}")
    affine = np.asarray(affine, np.float64)
    target = zoom_affine(affine, np.asarray(pixdim, np.float64), diagonal=False)
    shape, offset = compute_shape_offset(volume.shape, affine, target)
    target[:3, 3] = offset[:3]
    source_from_target = np.linalg.solve(affine, target)  # output voxel -> input voxel coordinates
    scale = np.diag(source_from_target)[:3]
    if not np.allclose(source_from_target[:3, :3], np.diag(scale), atol=1e-6):
        raise ValueError(f"resampling to {list(pixdim)} mixes axes (voxel transform {source_from_target.round(4)})")
    resampled = volume.float()
    # trilinear = three 1D interpolations in any order: the axes that shrink most go first, so the later (and the
    # largest) intermediate arrays are the smallest
    for axis in sorted(range(3), key=lambda a: int(shape[a]) / volume.shape[a]):
        coords = np.arange(int(shape[axis])) * scale[axis] + source_from_target[axis, 3]
        resampled = _interpolate_axis(resampled, axis, coords)
    return resampled, target


def _interpolate_axis(volume: torch.Tensor, axis: int, coords: np.ndarray) -> torch.Tensor:
    """Sample ``volume`` along ``axis`` at the voxel coordinates ``coords`` by linear interpolation, clamping
    coordinates to the axis (border padding). (…, N, …) -> (…, len(coords), …)."""
    size = volume.shape[axis]
    coords = np.clip(coords, 0, size - 1)
    if size == len(coords) and np.allclose(coords, np.arange(size), atol=1e-6):
        return volume
    low = np.floor(coords).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    shape = [1] * volume.ndim
    shape[axis] = len(coords)
    weight = torch.from_numpy((coords - low).astype(np.float32)).reshape(shape)
    below = volume.index_select(axis, torch.from_numpy(low))
    return below.lerp_(
        volume.index_select(axis, torch.from_numpy(high)), weight
    )  # in place: one output-sized array less
