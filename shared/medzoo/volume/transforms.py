"""Transforms of the 3D bundles that MONAI has almost: where MONAI's own version trips on real callers, where its
per-step bookkeeping costs more than the work (:class:`LoadVolumed`), or where it holds whole-volume buffers that the
result does not need (:class:`InvertArgMaxd`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import monai.transforms
import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.utils import convert_to_dst_type

from medzoo.io_checks import read_nifti
from medzoo.spatial import center_fit, reorient, resample_to_spacing

__all__ = ["ArgMaxd", "InvertArgMaxd", "LoadVolumed", "Spacingd", "channel_argmax"]


class LoadVolumed(monai.transforms.MapTransform):
    """Replace the path of a 3D NIfTI volume under each key with the volume on the network's grid:
    ``(1, *spatial_size)`` float32, a plain tensor.

    The volume is turned to ``axcodes``, resampled linearly to ``pixdim`` and cropped or padded (zeros) about its
    centre to ``spatial_size``: what ``LoadImaged`` + ``Orientationd`` + ``Spacingd(mode="bilinear")`` +
    ``ResizeWithPadOrCropd`` give, to float rounding (tested against them), without the metadata that makes those
    steps invertible (``benchmarks/volume_loading.py`` compares the two into ``docs/volume_loading.md``).
    Two float32 copies of the file's volume
    exist at once only while a flipped axis is made contiguous; the file's array is freed before resampling, which
    works from one copy (:func:`medzoo.spatial.resample_to_spacing`). For pipelines that must map an output back to
    the input's grid (segmentation), keep MONAI's transforms and invert with ``Invertd`` or :class:`InvertArgMaxd`.

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

    def __init__(
        self,
        keys: KeysCollection,
        pixdim: Sequence[float],
        spatial_size: Sequence[int],
        axcodes: str = "RAS",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.pixdim, self.spatial_size, self.axcodes = (
            [float(v) for v in pixdim],
            [int(n) for n in spatial_size],
            axcodes,
        )

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            volume, affine = read_nifti(d[key], ndim=3, channels=1)
            volume, affine = reorient(volume.reshape(volume.shape[:3]), affine, self.axcodes)
            # a flipped axis needs a contiguous copy; rebinding frees the file's array before resampling starts
            volume = torch.from_numpy(np.ascontiguousarray(volume))
            resampled, _ = resample_to_spacing(volume, affine, self.pixdim)
            del volume
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
        aside = {
            k: v
            for k, v in data.items()
            if isinstance(k, str) and k.startswith(prefixes) and not isinstance(v, Mapping)
        }
        resampled = super().__call__({k: v for k, v in data.items() if k not in aside}, lazy=lazy)
        resampled.update(aside)
        return resampled


def channel_argmax(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Index of the largest value along ``dim`` (the first one on ties, NaN counted largest), as ``torch.argmax``.

    Computed as ``torch.max(x, dim).indices``, which on the CPU is much faster than ``torch.argmax`` over the channel
    axis of a large volume (a reduction over the outermost, most strided axis;
    ``benchmarks/sliding_window_overhead.py`` measures the sliding-window inference against its network).
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


#: MONAI trace names of the preprocessing steps whose whole effect on the grid is a new affine and shape, and the
#: ``extra_info`` entry holding the affine of their input.
_GRID_STEPS = {"Orientation": "original_affine", "SpatialResample": "src_affine"}


def _label_dtype(num_classes: int) -> torch.dtype:
    """The smallest integer dtype that holds the labels 0 .. num_classes - 1."""
    return torch.uint8 if num_classes <= 256 else torch.int16 if num_classes <= 2**15 else torch.int32


class InvertArgMaxd(monai.transforms.MapTransform):
    """``(C, *S')`` class scores on the network's grid -> ``(1, *S)`` integer label map on the original image's grid,
    as ``Activationsd(softmax=True)`` + ``Invertd`` (orientation and spacing undone, the probabilities resampled as
    the ``Spacingd`` of the preprocessing recorded, bilinear by default) + an argmax, but one slab of the original grid
    at a time.

    That chain of MONAI transforms resamples all C probability channels to the original grid before the argmax: C
    values per original voxel, in float64 (``Spacing``'s computation type), plus the sampling grid of the whole volume.
    Here each slab of at most ``slab_voxels`` original voxels (whole planes of the first axis) is sampled from the
    box of the scores that it reaches, with the softmax taken over that box only (it is voxel-wise), in float32, and
    reduced to labels at once; nothing larger than one slab of probabilities exists at the original resolution, and
    no softmax copy of the whole score volume is made. The sample points are MONAI's (voxel ``i`` of the original grid
    at ``inverse(network affine) @ original affine @ i``, coordinates clamped to the volume as its ``border``
    padding), so the labels are those of the MONAI chain except where two classes are within float32 rounding.

    The original grid is read from the preprocessing's trace on ``orig_key`` (as ``Invertd`` reads it): the affine
    and shape before its first step. Only ``Orientation`` and spacing (``SpatialResample``) steps may appear there
    (intensity steps leave no trace); any other spatial step is an error naming it, since its inverse is not a
    resampling by affines.

    Args:
        keys: keys of the ``(C, *S')`` scores (logits when ``softmax``), e.g. ``"pred"``; replaced by ``(1, *S)``
            labels (uint8 up to 256 classes) as a ``MetaTensor`` carrying the original affine and ``orig_key``'s
            other metadata.
        orig_key: the preprocessed image: its ``affine`` is the network grid's, its trace leads back to the original.
        softmax: take the softmax over the channels before resampling (as ``Activationsd(softmax=True)``); off when
            the scores are already probabilities.
        slab_voxels: original voxels per slab (at least one plane): the working memory is about
            ``slab_voxels * (C + 4) * 4`` bytes.

    Example::

        InvertArgMaxd("pred", orig_key="image")({"pred": logits, "image": preprocessed})["pred"].shape  # (1, *original)
    """

    def __init__(
        self,
        keys: KeysCollection,
        orig_key: str = "image",
        softmax: bool = True,
        slab_voxels: int = 2**21,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if slab_voxels < 1:
            raise ValueError(f"slab_voxels must be at least 1, got {slab_voxels}")
        self.orig_key, self.softmax, self.slab_voxels = orig_key, softmax, int(slab_voxels)

    def _original_grid(self, image: MetaTensor) -> tuple[np.ndarray, list[int], dict]:
        """(affine, shape) of ``image`` before its preprocessing, and the resampling options of its spacing step."""
        steps = list(getattr(image, "applied_operations", []))
        if not steps:
            raise ValueError(
                f"InvertArgMaxd: '{self.orig_key}' carries no preprocessing trace (a MetaTensor from "
                "LoadImaged + Orientationd / Spacingd is needed to find the original grid)"
            )
        options = {"mode": "bilinear", "padding_mode": "border", "align_corners": False}  # orientation alone: exact
        for step in steps:
            if step["class"] not in _GRID_STEPS:
                raise ValueError(
                    f"InvertArgMaxd undoes only orientation and spacing; the preprocessing of "
                    f"'{self.orig_key}' also applied {step['class']}: use Invertd for that pipeline"
                )
            if step["class"] == "SpatialResample":
                info = step["extra_info"]  # align_corners None is recorded as a string; MONAI's default is False
                options = {
                    "mode": info.get("mode", "bilinear"),
                    "padding_mode": info.get("padding_mode", "border"),
                    "align_corners": info.get("align_corners") is True,
                }
        if options["padding_mode"] != "border" or options["mode"] not in ("bilinear", "nearest"):
            raise ValueError(
                f"InvertArgMaxd resamples with mode bilinear or nearest and border padding; the spacing "
                f"step recorded {options['mode']} / {options['padding_mode']}: use Invertd"
            )
        first = steps[0]
        affine = np.asarray(torch.as_tensor(first["extra_info"][_GRID_STEPS[first["class"]]]), np.float64)
        return affine, [int(n) for n in first["orig_size"]], options

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        image = d[self.orig_key]
        for key in self.key_iterator(d):
            scores = d[key]
            if tuple(scores.shape[1:]) != tuple(image.shape[1:]):
                raise ValueError(
                    f"InvertArgMaxd: '{key}' has spatial shape {tuple(scores.shape[1:])}, "
                    f"'{self.orig_key}' {tuple(image.shape[1:])}; they must share the network's grid"
                )
            dst_affine, dst_shape, options = self._original_grid(image)
            src_affine = np.asarray(torch.as_tensor(image.affine), np.float64)
            labels = self._resample_labels(
                torch.as_tensor(scores), np.linalg.solve(src_affine, dst_affine), dst_shape, options
            )
            meta = {k: v for k, v in image.meta.items() if k != "affine"}
            meta["spatial_shape"] = np.asarray(dst_shape)
            d[key] = MetaTensor(labels[None], affine=torch.as_tensor(dst_affine), meta=meta)
            del scores
        return d

    def _output_dtype(self, num_classes: int) -> torch.dtype:
        """dtype of the output map (a subclass reducing the probabilities otherwise overrides it with ``_reduce``)."""
        return _label_dtype(num_classes)

    def _reduce(self, probabilities: torch.Tensor) -> torch.Tensor:
        """(C, *slab) probabilities on the original grid -> (*slab) labels."""
        return channel_argmax(probabilities, dim=0)

    def _resample_labels(
        self, scores: torch.Tensor, voxel_map: np.ndarray, dst_shape: list[int], options: dict
    ) -> torch.Tensor:
        """``scores`` (C, *S') sampled at ``voxel_map`` @ (i, j, k, 1) for every voxel of ``dst_shape`` and reduced to
        labels, slab by slab along the first axis: (*dst_shape) integer tensor."""
        src_shape = scores.shape[1:]
        labels = torch.empty(dst_shape, dtype=self._output_dtype(scores.shape[0]))
        planes = max(1, self.slab_voxels // max(1, dst_shape[1] * dst_shape[2]))
        # source coordinate k = sum_j voxel_map[k, j] * index_j + voxel_map[k, 3]: the axis-1 and axis-2 terms are
        # the same for every slab (float64 products, summed in float32)
        axes = [np.arange(n, dtype=np.float64) for n in dst_shape]
        shape_of = ((-1, 1, 1), (1, -1, 1), (1, 1, -1))
        terms = [
            [
                torch.from_numpy(
                    (voxel_map[k, j] * axes[j] + (voxel_map[k, 3] if j == 0 else 0.0)).astype(np.float32)
                ).reshape(shape_of[j])
                for j in range(3)
            ]
            for k in range(3)
        ]
        for start in range(0, dst_shape[0], planes):
            stop = min(start + planes, dst_shape[0])
            grid = torch.empty(1, stop - start, *dst_shape[1:], 3)
            box = []
            for k in range(3):
                first = terms[k][0][start:stop]
                # the source voxels the slab reaches: the extremes of a sum of per-axis terms, clamped to the volume.
                # Border padding clamps a sample point to the box as it would to the volume: a point beyond the
                # volume's end makes the box end there too.
                extremes = [
                    sum(float(getattr(t, m)()) for t in (first, terms[k][1], terms[k][2])) for m in ("min", "max")
                ]
                low, high = (min(max(e, 0.0), src_shape[k] - 1.0) for e in extremes)
                low, high = int(np.floor(low)), int(np.ceil(high)) + 1
                box.append(slice(low, high))
                # grid_sample's normalised coordinate in the box (align_corners: -1 and 1 at the end voxels' centres,
                # else at their outer edges) is linear in the voxel coordinate: scale the terms, then add them
                size = high - low
                if options["align_corners"]:
                    scale = 2.0 / (size - 1) if size > 1 else 0.0
                    offset = -low * scale - 1.0 if size > 1 else 0.0
                else:
                    scale, offset = 2.0 / size, (1.0 - 2.0 * low) / size - 1.0
                grid[0, ..., 2 - k] = first * scale + offset + terms[k][1] * scale + terms[k][2] * scale  # (W, H, D)
            block = scores[(slice(None), *box)].float()
            if self.softmax:
                block = torch.softmax(block, dim=0)
            probabilities = F.grid_sample(
                block[None], grid, mode=options["mode"], padding_mode="border", align_corners=options["align_corners"]
            )
            labels[start:stop] = self._reduce(probabilities[0]).to(labels.dtype)
            del probabilities, grid, block
        return labels
