"""The canvas of a synthetic chest radiograph (:mod:`medzoo.cxr.synthetic`) and the soft shapes it is drawn with.

A :class:`Scene` is one image being drawn, as a density map over normalised coordinates, with the anatomy the findings
of :mod:`medzoo.cxr.phantom_findings` are placed in. The shapes are soft (smooth edges, no aliasing): :func:`soft`
steps, :func:`disk` masks and :func:`smooth_noise` fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = ["Scene", "disk", "smooth_noise", "soft"]


@dataclass
class Scene:
    """One image being drawn: density map ``dens`` (H, W), normalised coordinates and the anatomy it was drawn with.

    ``x`` has shape (1, W) and ``y`` (H, 1), both in about [-1, 1] after the per-image shift and scale; ``lungs[i]`` is
    the soft mask (H, W) of lung ``i`` (0: image left, 1: image right) whose ellipse is ``lung_geom[i] = (cx, cy, ax,
    ay)``; ``heart`` is the heart ellipse and ``collapsed_side`` the lung with Atelectasis volume loss (-1: none).
    """

    x: np.ndarray
    y: np.ndarray
    dens: np.ndarray
    lungs: list[np.ndarray] = field(default_factory=list)
    lung_geom: list[tuple[float, float, float, float]] = field(default_factory=list)
    heart: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    collapsed_side: int = -1
    marking_gain: np.ndarray | float = 1.0


def soft(d: np.ndarray, width: float) -> np.ndarray:
    """Soft step: 1 where ``d >> width``, 0 where ``d << -width``."""
    return 0.5 + 0.5 * np.tanh(d / width)


@lru_cache(maxsize=16)
def _upsampler(size: int, cells: int) -> np.ndarray:
    """Bilinear interpolation matrix of shape (size, cells + 1) from a coarse lattice to ``size`` pixels."""
    pos = np.linspace(0.0, cells, size, dtype=np.float64)
    idx = np.minimum(pos.astype(np.int64), cells - 1)
    frac = pos - idx
    mat = np.zeros((size, cells + 1), dtype=np.float32)
    mat[np.arange(size), idx] = 1.0 - frac
    mat[np.arange(size), idx + 1] = frac
    return mat


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean smooth random field (size, size) with features about ``size / cells`` pixels wide, std about 1."""
    mat = _upsampler(size, cells)
    field_ = mat @ rng.standard_normal((cells + 1, cells + 1), dtype=np.float32) @ mat.T
    return field_ / 0.6


def disk(s: Scene, cx: float, cy: float, radius: float, edge: float) -> np.ndarray:
    """Soft disk mask (H, W)."""
    return soft(radius - np.sqrt((s.x - cx) ** 2 + (s.y - cy) ** 2), edge)
