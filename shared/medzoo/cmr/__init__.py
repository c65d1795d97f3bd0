"""Cardiac MR: cine motion, LGE-to-cine registration and infarct segmentation; data layout, phantoms, the chain."""

from . import chain, datasets, engines, io, losses, motion, synthetic, transforms

__all__ = ["chain", "datasets", "engines", "io", "losses", "motion", "synthetic", "transforms"]
