"""Dictionary transforms that turn a datalist entry (see :mod:`medzoo.cmr.datasets`) into network-ready tensors.

Each transform keeps the path under its key and writes the loaded tensor under a new key, so error messages and
writers can still name the file. Shapes are channel-first: (C, H, W).

The loaders can bring a slice to the network's size as they read it (``spatial_size``):
:func:`medzoo.spatial.center_fit` crops or pads it about its centre with the offsets of MONAI's ``ResizeWithPadOrCrop``,
and :func:`medzoo.spatial.center_restore` undoes that on a prediction (the cardiac writer does it, see
:class:`medzoo.cmr.engines.SliceNiftiWriter`). On plain arrays this costs microseconds; ``ResizeWithPadOrCropd`` +
``Invertd`` track the operation on MetaTensors, which costs far more per slice, even when the slice is already at
the network's size.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.networks.blocks import Warp
from monai.transforms import MapTransform

from medzoo.cmr.io import mask_slice, read_cine_frames, read_lge, read_mask
from medzoo.io_checks import check_input_file
from medzoo.spatial import center_fit

__all__ = ["LoadCineFramesd", "LoadLGEd", "LoadMaskSliced", "WarpByDDFd"]


def _fitted(image: np.ndarray, spatial_size: Sequence[int] | None, mode: str) -> torch.Tensor:
    """A new tensor (never a view: a cached mask must not change) of ``image``, fitted to ``spatial_size`` if given."""
    return torch.tensor(image if spatial_size is None else center_fit(image, spatial_size, mode))


class LoadCineFramesd(MapTransform):
    """Load the cine slice at ``data[key]`` and write ``data[output_key]``: (2, H, W) float32 [ED, ES] in [0, 1].

    Args:
        key: datalist key of the cine file (T, H, W).
        output_key: where the frames go.
        es_frame: end-systole frame; ``None`` means T // 2.
        spatial_size: if given, (H', W') to :func:`center_fit` the frames to, padding with ``pad_mode``.
    """

    def __init__(
        self,
        key: str = "cine",
        output_key: str = "image",
        es_frame: int | None = None,
        spatial_size: Sequence[int] | None = None,
        pad_mode: str = "edge",
    ) -> None:
        super().__init__(keys=key)
        self.key, self.output_key, self.es_frame = key, output_key, es_frame
        self.spatial_size, self.pad_mode = spatial_size, pad_mode

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        d[self.output_key] = _fitted(read_cine_frames(d[self.key], self.es_frame), self.spatial_size, self.pad_mode)
        return d


class LoadLGEd(MapTransform):
    """Load the LGE slice at ``data[key]`` and write ``data[output_key]``: (1, H, W) float32 in [0, 1].

    ``spatial_size``, if given, is the (H', W') to :func:`center_fit` the slice to, padding with ``pad_mode``.
    """

    def __init__(
        self,
        key: str = "lge",
        output_key: str = "lge_image",
        spatial_size: Sequence[int] | None = None,
        pad_mode: str = "edge",
    ) -> None:
        super().__init__(keys=key)
        self.key, self.output_key, self.spatial_size, self.pad_mode = key, output_key, spatial_size, pad_mode

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        d[self.output_key] = _fitted(read_lge(d[self.key])[None], self.spatial_size, self.pad_mode)
        return d


class LoadMaskSliced(MapTransform):
    """Load slice ``data[index_key]`` of the per-case masks at ``data[k]`` for each key, as (1, H, W) float32 {0, 1}.

    A datalist lists a case's slices one after another, so each key keeps the last mask it read and reads the file
    again only when the path, size or modification time changes.

    Args:
        keys: datalist keys of per-case masks (S, H, W), e.g. ``["cine_myo", "cine_mi"]``.
        output_keys: where each mask slice goes, e.g. ``["myo", "label"]``.
        index_key: datalist key of the slice index.
        spatial_size: if given, the (H', W') to :func:`center_fit` the slices to (zero padding).
    """

    def __init__(
        self,
        keys: Sequence[str],
        output_keys: Sequence[str],
        index_key: str = "slice_index",
        spatial_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__(keys=keys)
        if len(output_keys) != len(self.keys):
            raise ValueError(f"{len(self.keys)} keys but {len(output_keys)} output keys")
        self.output_keys, self.index_key, self.spatial_size = list(output_keys), index_key, spatial_size
        self._last: dict[Hashable, tuple[tuple, np.ndarray]] = {}  # key -> ((path, size, mtime), mask)

    def _mask(self, key: Hashable, path: str | os.PathLike) -> np.ndarray:
        stat = check_input_file(path).stat()
        stamp = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._last or self._last[key][0] != stamp:
            self._last[key] = (stamp, read_mask(path))
        return self._last[key][1]

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key, out in zip(self.keys, self.output_keys):
            plane = mask_slice(self._mask(key, d[key]), d[key], int(d[self.index_key]))
            d[out] = _fitted(plane[None], self.spatial_size, "constant")
        return d


class WarpByDDFd(MapTransform):
    """Warp ``data[k]`` (C, H, W) by the displacement ``data[ddf_key]`` (2, H, W) into ``data[output_key]``.

    Used after registration: the warped moving image is ``m(p + u(p))`` (:class:`monai.networks.blocks.Warp`,
    border padding); ``mode="nearest"`` for label maps.
    """

    def __init__(
        self, keys: Sequence[str], output_keys: Sequence[str], ddf_key: str = "pred", mode: str = "bilinear"
    ) -> None:
        super().__init__(keys=keys)
        if len(output_keys) != len(self.keys):
            raise ValueError(f"{len(self.keys)} keys but {len(output_keys)} output keys")
        self.output_keys, self.ddf_key = list(output_keys), ddf_key
        self.warp = Warp(mode=mode, padding_mode="border")

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        ddf = torch.as_tensor(d[self.ddf_key]).float()[None]
        for key, out in zip(self.keys, self.output_keys):
            d[out] = self.warp(torch.as_tensor(d[key]).float()[None].to(ddf.device), ddf)[0]
        return d
