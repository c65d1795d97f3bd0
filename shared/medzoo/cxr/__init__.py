"""Chest X-ray: label sets, readers and intensity presets, dataset preparers, clinical fields, synthetic data, weight
importers."""

from . import (
    bundle_convert,
    clinical,
    clinical_phantoms,
    convert,
    datasets,
    labels,
    phantom_findings,
    phantom_scene,
    synthetic,
    transforms,
)

__all__ = [
    "bundle_convert",
    "clinical",
    "clinical_phantoms",
    "convert",
    "datasets",
    "labels",
    "phantom_findings",
    "phantom_scene",
    "synthetic",
    "transforms",
]
