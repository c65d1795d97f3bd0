"""Box-filter resizing of a 2D image straight from its stored pixels (uint8, uint16, int32 or float32).

The weights are those of Pillow's ``Image.resize(..., Image.Resampling.BOX)``: output pixel ``k`` along an axis is the
mean of the input pixels whose centres fall inside its span (for shrinking), or the input pixel under its centre
(for enlarging). Unlike Pillow, the sums run in float64 on the stored values, without a float32 copy of the whole
image first; the results agree with Pillow's to float32 rounding. ``benchmarks/cxr_reading.py`` times the
chest X-ray reading built on it against Pillow's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

__all__ = ["box_resize"]


@numba.njit(cache=True, nogil=True)
def _box_spans(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """First input index and number of inputs of each of ``size_out`` box-filter outputs, as Pillow computes them:
    input ``x`` counts for output ``k`` when ``(x + 0.5 - centre_k) / max(scale, 1)`` is in ``(-0.5, 0.5]``."""
    scale = size_in / size_out
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    starts = np.empty(size_out, np.int64)
    counts = np.zeros(size_out, np.int64)
    for k in range(size_out):
        centre = (k + 0.5) * scale
        first, last = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), size_in)
        starts[k] = last
        for x in range(first, last):
            t = (x - centre + 0.5) / filter_scale
            if -0.5 < t <= 0.5:
                starts[k] = min(starts[k], x)
                counts[k] += 1
    return starts, counts


@numba.njit(cache=True, nogil=True)
def _box_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) image of any real dtype -> (height, width) float32 box means (rows summed first, then columns)."""
    row_starts, row_counts = _box_spans(image.shape[0], height)
    col_starts, col_counts = _box_spans(image.shape[1], width)
    out = np.empty((height, width), np.float32)
    column_sums = np.empty(image.shape[1], np.float64)
    for j in range(height):
        column_sums[:] = 0.0
        for r in range(row_starts[j], row_starts[j] + row_counts[j]):
            column_sums += image[r]
        for k in range(width):
            total = 0.0
            for c in range(col_starts[k], col_starts[k] + col_counts[k]):
                total += column_sums[c]
            out[j, k] = total / (row_counts[j] * col_counts[k])
    return out


def box_resize(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize ``image`` with a box filter (Pillow's ``BOX`` weights).

    Args:
        image: (H, W) array, uint8, uint16, int32 or float32.
        size: output ``(height, width)``, each at least 1.

    Returns:
        (height, width) float32 array.

    Example::

        box_resize(np.arange(16, dtype=np.uint8).reshape(4, 4), (2, 2))  # [[2.5, 4.5], [10.5, 12.5]]
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be two positive sizes (h, w), got {tuple(size)}")
    return _box_resize(np.ascontiguousarray(image), height, width)
