"""Losses the bundles need and MONAI lacks."""

from .motion import PhotometricSmoothnessLoss
from .multilabel import MultiLabelLoss

__all__ = ["MultiLabelLoss", "PhotometricSmoothnessLoss"]
