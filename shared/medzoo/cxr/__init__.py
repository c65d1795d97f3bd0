"""Chest X-ray: label sets, readers and intensity presets, dataset preparers, synthetic data, weight importers."""

from . import bundle_convert, convert, datasets, labels, synthetic, transforms

__all__ = ["bundle_convert", "convert", "datasets", "labels", "synthetic", "transforms"]
