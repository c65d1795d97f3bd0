"""Losses the bundles need and MONAI lacks. Where MONAI has one (``FocalLoss``, ``DiceCELoss``, ``DiceFocalLoss``,
``BendingEnergyLoss``, ``ContrastiveLoss``...), the bundles use MONAI's."""

from .distillation import DistillationLoss
from .motion import PhotometricSmoothnessLoss
from .multilabel import MultiLabelLoss
from .uncertainty import HeteroscedasticLoss

__all__ = ["DistillationLoss", "HeteroscedasticLoss", "MultiLabelLoss", "PhotometricSmoothnessLoss"]
