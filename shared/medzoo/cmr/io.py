"""Reading and writing the cardiac NIfTI files, with errors that name the file and the problem.

Files are read by :func:`medzoo.io_checks.read_nifti` (missing, unreadable, truncated, wrong number of axes, NaN/Inf:
:class:`medzoo.io_checks.InputFileError`) and written by :func:`medzoo.io_checks.save_nifti`; the functions here add
the cardiac checks (frames, mask values, slices).

Conventions of the cardiac layout (see :mod:`medzoo.cmr.datasets`): a cine slice is (T, H, W), an LGE slice (H, W)
(a singleton axis is accepted), a per-case mask (S, H, W) with values {0, 1}.
"""

from __future__ import annotations

import os

import numpy as np

from medzoo.io_checks import read_nifti

__all__ = ["mask_slice", "minmax_scale", "read_cine_frames", "read_lge", "read_mask", "read_mask_slice"]


def minmax_scale(array: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the array's own minimum and maximum (a constant array becomes zeros)."""
    low, high = float(array.min()), float(array.max())
    return ((array - low) / max(high - low, 1e-8)).astype(np.float32)


def read_cine_frames(path: str | os.PathLike, es_frame: int | None = None) -> np.ndarray:
    """End-diastole (frame 0) and end-systole (``es_frame``, default T // 2) of a cine slice (T, H, W).

    Returns:
        (2, H, W) float32, [ED, ES] min-max scaled together to [0, 1].
    """
    cine, _ = read_nifti(path, ndim=3)
    frames = cine.shape[0]
    if frames < 2:
        raise ValueError(f"{path}: a cine slice needs at least 2 frames (T, H, W), got shape {cine.shape}")
    es = frames // 2 if es_frame is None else int(es_frame)
    if not 0 < es < frames:
        raise ValueError(f"{path}: end-systole frame {es} out of range 1..{frames - 1}")
    return minmax_scale(np.stack([cine[0], cine[es]]))


def read_lge(path: str | os.PathLike) -> np.ndarray:
    """An LGE slice, (H, W) or with one singleton axis, as (H, W) float32 min-max scaled to [0, 1]."""
    lge, _ = read_nifti(path, ndim=(2, 3))
    squeezed = np.squeeze(lge)
    if squeezed.ndim != 2:
        raise ValueError(f"{path}: expected an LGE slice (H, W), got shape {lge.shape}")
    return minmax_scale(squeezed)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A per-case mask (S, H, W) as float32 in {0, 1}."""
    mask, _ = read_nifti(path, ndim=3)
    if not np.isin(mask, (0.0, 1.0)).all():
        raise ValueError(f"{path}: mask values must be 0 or 1, found {np.unique(mask)[:6].tolist()}")
    return mask


def mask_slice(mask: np.ndarray, path: str | os.PathLike, slice_index: int) -> np.ndarray:
    """Slice ``slice_index`` (H, W) of a per-case ``mask`` (S, H, W) read from ``path`` (named in the error)."""
    if not 0 <= int(slice_index) < mask.shape[0]:
        raise ValueError(
            f"{path}: slice index {slice_index} out of range 0..{mask.shape[0] - 1} (mask shape {mask.shape})"
        )
    return mask[int(slice_index)]


def read_mask_slice(path: str | os.PathLike, slice_index: int) -> np.ndarray:
    """Slice ``slice_index`` of a per-case mask (S, H, W) as (H, W) float32 in {0, 1}."""
    return mask_slice(read_mask(path), path, slice_index)
