"""What each finding of a synthetic chest radiograph (:mod:`medzoo.cxr.synthetic`) paints on its :class:`Scene`.

:data:`FINDINGS` maps a label of :data:`~medzoo.cxr.labels.CHEXNET_LABELS` to its painter, which changes the scene's
density map in place with strength ``a`` in [0.8, 1.1] and the random side, position and size it draws from ``rng``.
Cardiomegaly (an enlarged heart), and the volume changes of Emphysema and Atelectasis, are shapes of the anatomy itself
and are drawn with it by :mod:`medzoo.cxr.synthetic`, so Cardiomegaly has no painter.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medzoo.cxr.phantom_scene import Scene, disk, smooth_noise, soft

__all__ = ["FINDINGS"]


def _point_in_lung(rng: np.random.Generator, s: Scene, side: int, v_range: tuple[float, float]) -> tuple[float, float]:
    """A random point in lung ``side`` (0 or 1) at a relative height in ``v_range`` (-1 apex, +1 base)."""
    cx, cy, ax, ay = s.lung_geom[side]
    v = rng.uniform(*v_range)
    u_max = np.sqrt(max(1.0 - v * v, 0.05)) * 0.6
    return cx + rng.uniform(-u_max, u_max) * ax, cy + v * ay


def _atelectasis(s: Scene, rng: np.random.Generator, a: float) -> None:
    """Plate-like linear opacities in the lower zone of the lung whose volume loss the anatomy drew (smaller lung,
    elevated hemidiaphragm, mediastinum shifted toward it)."""
    side = s.collapsed_side
    cx, cy, ax, ay = s.lung_geom[side]
    for _ in range(2):
        y0 = cy + rng.uniform(0.1, 0.4) * ay
        tilt = rng.uniform(-0.25, 0.25)
        band = np.exp(-(((s.y - y0 - tilt * (s.x - cx)) / 0.06) ** 2))
        s.dens += 0.4 * a * band * s.lungs[side]


def _effusion(s: Scene, rng: np.random.Generator, a: float) -> None:
    """Fluid filling a lung base with a meniscus rising laterally; bilateral in a third of the cases."""
    sides = [0, 1] if rng.random() < 0.33 else [int(rng.integers(2))]
    for side in sides:
        cx, cy, ax, ay = s.lung_geom[side]
        level = cy + rng.uniform(0.3, 0.55) * ay
        lateral = np.clip((s.x - cx) * (1 if side else -1) / ax, -1.0, 1.0)
        fluid = soft(s.y - (level - 0.12 * (lateral + 1.0)), 0.02) * s.lungs[side]
        s.dens += a * fluid * (0.62 - s.dens)


def _infiltration(s: Scene, rng: np.random.Generator, a: float) -> None:
    """Patchy ill-defined opacities scattered in both lungs."""
    patches = np.clip(smooth_noise(rng, s.dens.shape[0], 10) + 0.3, 0.0, 1.0)
    s.dens += 0.4 * a * patches * (s.lungs[0] + s.lungs[1])


def _mass(s: Scene, rng: np.random.Generator, a: float) -> None:
    """One large, slightly lobulated, well-defined opacity in a lung."""
    cx, cy = _point_in_lung(rng, s, int(rng.integers(2)), (-0.5, 0.4))
    radius = rng.uniform(0.16, 0.2)
    angle = np.arctan2(s.y - cy, s.x - cx)
    lobulated = radius * (1.0 + 0.12 * np.sin(3.0 * angle + rng.uniform(0, 2 * np.pi)))
    blob = soft(lobulated - np.sqrt((s.x - cx) ** 2 + (s.y - cy) ** 2), 0.012)
    s.dens += 0.5 * a * blob


def _nodule(s: Scene, rng: np.random.Generator, a: float) -> None:
    """Two to four small, sharp, bright round spots in the lungs."""
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = _point_in_lung(rng, s, int(rng.integers(2)), (-0.6, 0.5))
        s.dens += 0.6 * a * disk(s, cx, cy, rng.uniform(0.05, 0.065), 0.006)


def _pneumonia(s: Scene, rng: np.random.Generator, a: float) -> None:
    """An ill-defined, slightly mottled air-space opacity across the middle zone of one lung."""
    side = int(rng.integers(2))
    cx, cy, ax, ay = s.lung_geom[side]
    centre, height = cy + rng.uniform(0.0, 0.25) * ay, rng.uniform(0.2, 0.26)
    cloud = np.minimum(1.8 * np.exp(-(((s.y - centre) / height) ** 2) - ((s.x - cx) / (1.2 * ax)) ** 4), 1.0)
    mottle = 0.85 + 0.15 * np.clip(smooth_noise(rng, s.dens.shape[0], 16), -1.0, 1.0)
    s.dens += a * cloud * mottle * s.lungs[side] * (0.6 - s.dens)


def _pneumothorax(s: Scene, rng: np.random.Generator, a: float) -> None:
    """Air without lung markings at an apex and lateral wall, bounded by a thin bright visceral pleural line."""
    side = int(rng.integers(2))
    cx, cy, ax, ay = s.lung_geom[side]
    r = np.sqrt(((s.x - cx) / ax) ** 2 + ((s.y - cy) / ay) ** 2)
    depth = rng.uniform(0.25, 0.35)
    upper = soft(cy + rng.uniform(-0.2, 0.1) * ay - s.y, 0.03)
    air = soft(r - (1.0 - depth), 0.01) * upper * s.lungs[side]
    line = np.exp(-(((r - (1.0 - depth)) / 0.02) ** 2)) * upper * s.lungs[side]
    s.marking_gain = s.marking_gain * (1.0 - air)
    s.dens += a * (0.2 * line - 0.22 * air)


def _consolidation(s: Scene, rng: np.random.Generator, a: float) -> None:
    """Dense homogeneous opacity of an upper lobe, sharply bounded below by the fissure."""
    side = int(rng.integers(2))
    cx, cy, ax, ay = s.lung_geom[side]
    fissure = cy + rng.uniform(-0.4, -0.15) * ay + 0.08 * (s.x - cx)
    lobe = soft(fissure - s.y, 0.01) * s.lungs[side]
    s.dens += a * lobe * (0.55 - s.dens)


def _edema(s: Scene, rng: np.random.Generator, a: float) -> None:
    """Bilateral perihilar 'bat-wing' haze with Kerley B lines at the lateral bases."""
    hx, hy = rng.uniform(0.17, 0.23), rng.uniform(-0.1, 0.05)
    haze = np.exp(-(((np.abs(s.x) - hx) / 0.2) ** 2) - ((s.y - hy) / 0.3) ** 2)
    lungs = s.lungs[0] + s.lungs[1]
    kerley = (0.5 + 0.5 * np.cos(2 * np.pi * s.y / 0.05)) ** 8 * soft(np.abs(s.x) - 0.5, 0.03) * soft(s.y - 0.1, 0.05)
    s.dens += a * (0.35 * haze + 0.14 * kerley) * lungs


def _emphysema(s: Scene, rng: np.random.Generator, a: float) -> None:
    """Hyperlucent lungs with sparse markings (large lungs and flat diaphragm are drawn with the anatomy)."""
    s.dens -= 0.1 * a * (s.lungs[0] + s.lungs[1])
    s.marking_gain = s.marking_gain * 0.3


def _fibrosis(s: Scene, rng: np.random.Generator, a: float) -> None:
    """Coarse reticular net, strongest in the lower and peripheral zones of both lungs."""
    size = s.dens.shape[0]
    net = np.exp(-((smooth_noise(rng, size, 12) / 0.6) ** 2)) + np.exp(-((smooth_noise(rng, size, 12) / 0.6) ** 2))
    basal = soft(s.y + 0.3, 0.2)
    s.dens += 0.3 * a * net * basal * (s.lungs[0] + s.lungs[1])


def _pleural_thickening(s: Scene, rng: np.random.Generator, a: float) -> None:
    """A bright rind along the lateral chest wall and apex of one or both lungs."""
    sides = [0, 1] if rng.random() < 0.4 else [int(rng.integers(2))]
    for side in sides:
        cx, cy, ax, ay = s.lung_geom[side]
        r = np.sqrt(((s.x - cx) / ax) ** 2 + ((s.y - cy) / ay) ** 2)
        lateral = soft((s.x - cx) * (1 if side else -1) + 0.3 * ax, 0.05)
        rind = soft(r - (1.0 - rng.uniform(0.25, 0.32)), 0.01) * lateral * s.lungs[side]
        s.dens += 0.45 * a * rind


def _hernia(s: Scene, rng: np.random.Generator, a: float) -> None:
    """Hiatal hernia: a round gas bubble with an air-fluid level and a bright wall behind the lower heart."""
    hcx, hcy, hax, hay = s.heart
    cx, cy = hcx + rng.uniform(-0.08, 0.04), hcy + rng.uniform(0.0, 0.08)
    radius = rng.uniform(0.1, 0.13)
    dist = np.sqrt((s.x - cx) ** 2 + (s.y - cy) ** 2)
    inside = soft(radius - dist, 0.008)
    wall = np.exp(-(((dist - radius) / 0.012) ** 2))
    gas = inside * soft(cy + 0.3 * radius - s.y, 0.008)
    s.dens += a * (0.15 * wall - 0.4 * gas)


#: Painter of each finding drawn on the scene: ``painter(scene, rng, strength)``.
FINDINGS: dict[str, Callable[[Scene, np.random.Generator, float], None]] = {
    "Atelectasis": _atelectasis,
    "Effusion": _effusion,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pneumonia": _pneumonia,
    "Pneumothorax": _pneumothorax,
    "Consolidation": _consolidation,
    "Edema": _edema,
    "Emphysema": _emphysema,
    "Fibrosis": _fibrosis,
    "Pleural_Thickening": _pleural_thickening,
    "Hernia": _hernia,
}
