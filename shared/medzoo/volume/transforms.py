"""Transforms of the 3D bundles that MONAI has almost: where MONAI's own version trips on real callers, or where its
per-step bookkeeping costs more than the work (:class:`LoadVolumed`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import monai.transforms
import numpy as np
import torch
from monai.config import KeysCollection
from monai.utils import convert_to_dst_type

from medzoo.io_checks import read_nifti
from medzoo.spatial import center_fit, reorient, resample_to_spacing

__all__ = ["ArgMaxd", "LoadVolumed", "Spacingd", "channel_argmax"]


class LoadVolumed(monai.transforms.MapTransform):
    """Replace the path of a 3D NIfTI volume under each key with the volume on the network's grid:
    ``(1, *spatial_size)`` float32, a plain tensor.

    The volume is turned to ``axcodes``, resampled linearly to ``pixdim`` and cropped or padded (zeros) about its
    centre to ``spatial_size``: what ``LoadImaged`` + ``Orientationd`` + ``Spacingd(mode="bilinear")`` +
    ``ResizeWithPadOrCropd`` give, to float rounding (tested against them), without the metadata that makes those
    steps invertible. On the classification bundle's sample volumes it is 2.9x as fast as the four on one thread
    (``scripts/benchmark_volume_loading.py``, ``docs/volume_loading.md``). For pipelines that must map an output back
    to the input's grid (segmentation), keep MONAI's transforms and ``Invertd``.

    Args:
        keys: datalist keys of ``.nii`` / ``.nii.gz`` volumes, (X, Y, Z) or (X, Y, Z, 1).
        pixdim: voxel spacing (mm) of the output's three axes.
        spatial_size: the output's (X', Y', Z').
        axcodes: direction of the output's axes, e.g. ``"RAS"``.

    Raises:
        medzoo.io_checks.InputFileError: a missing, unreadable, non-3D or non-finite volume, naming the file.

    Example::

        LoadVolumed("image", pixdim=(2.0, 2.0, 2.5), spatial_size=(64, 64, 48))({"image": "case_001.nii.gz"})
    """

    def __init__(self, keys: KeysCollection, pixdim: Sequence[float], spatial_size: Sequence[int],
                 axcodes: str = "RAS", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.pixdim, self.spatial_size, self.axcodes = [float(v) for v in pixdim], [int(n) for n in spatial_size], axcodes

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            volume, affine = read_nifti(d[key], ndim=3, channels=1)
            volume, affine = reorient(volume.reshape(volume.shape[:3]), affine, self.axcodes)
            resampled, _ = resample_to_spacing(torch.from_numpy(np.ascontiguousarray(volume)), affine, self.pixdim)
            fitted = center_fit(resampled.numpy(), self.spatial_size)
            d[key] = torch.from_numpy(np.ascontiguousarray(fitted))[None]
        return d


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


def channel_argmax(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Index of the largest value along ``dim`` (the first one on ties, NaN counted largest), as ``torch.argmax``.

    Computed as ``torch.max(x, dim).indices``, which on the CPU is much faster than ``torch.argmax`` over the channel
    axis of a large volume (a reduction over the outermost, most strided axis): with ``torch.argmax`` the segmentation
    bundle's sliding-window inference took 23 % longer than its network, with this about 0 % in a later run of the
    same script (``scripts/volume_sliding_window_memory.py``).
    """
    return torch.max(x, dim).indices


class ArgMaxd(monai.transforms.MapTransform):
    """``(C, *S)`` class scores -> ``(1, *S)`` label map of the same type and dtype (metadata kept), as MONAI's
    ``AsDiscreted(argmax=True)``, through :func:`channel_argmax`.

    Example::

        ArgMaxd(keys="pred")({"pred": torch.rand(4, 96, 96, 64)})["pred"].shape  # (1, 96, 96, 64)
    """

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            scores = d[key]
            labels = channel_argmax(torch.as_tensor(scores), dim=0)[None]
            d[key] = convert_to_dst_type(labels, scores, dtype=scores.dtype)[0]
        return d
