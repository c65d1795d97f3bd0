"""Transforms of the 3D bundles that MONAI has almost: only where MONAI's own version trips on real callers."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import monai.transforms
import torch

__all__ = ["Spacingd"]


class Spacingd(monai.transforms.Spacingd):
    """MONAI's :class:`monai.transforms.Spacingd`, for data dicts that carry other ``<key>_*`` entries than
    metadata dicts.

    For a NIfTI input, MONAI 1.6's ``Spacingd`` updates every ``<key>_*`` entry of the data dict with the resampled
    image's metadata and fails on one that is not a dict, such as the ``image_path`` string that MONAI Label's
    ``monaibundle`` app adds to every request (``AttributeError: 'str' object has no attribute 'update'``). This
    transform keeps such entries out of that update, hands them back unchanged, and is otherwise MONAI's.

    Example::

        Spacingd(keys="image", pixdim=(1.5, 1.5, 2.0))({"image": volume, "image_path": "/data/case_001.nii.gz"})
    """

    def __call__(self, data: Mapping[Hashable, torch.Tensor], lazy: bool | None = None) -> dict[Hashable, torch.Tensor]:
        prefixes = tuple(f"{key}_" for key in self.keys)
        aside = {k: v for k, v in data.items()
                 if isinstance(k, str) and k.startswith(prefixes) and not isinstance(v, Mapping)}
        resampled = super().__call__({k: v for k, v in data.items() if k not in aside}, lazy=lazy)
        resampled.update(aside)
        return resampled
