"""Losses the bundles need and MONAI lacks."""

from .multilabel import MultiLabelLoss

__all__ = ["MultiLabelLoss"]
