"""Dictionary transforms that turn a datalist entry (see :mod:`medzoo.cmr.datasets`) into network-ready tensors.

Each transform keeps the path under its key and writes the loaded tensor under a new key, so error messages and
writers can still name the file. Shapes are channel-first: (C, H, W).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import torch
from monai.networks.blocks import Warp
from monai.transforms import MapTransform, Transform

from medzoo.cmr.io import read_cine_frames, read_lge, read_mask_slice

__all__ = ["LoadCineFramesd", "LoadLGEd", "LoadMaskSliced", "SkipFailedd", "WarpByDDFd"]


class LoadCineFramesd(MapTransform):
    """Load the cine slice at ``data[key]`` and write ``data[output_key]``: (2, H, W) float32 [ED, ES] in [0, 1].

    Args:
        key: datalist key of the cine file (T, H, W).
        output_key: where the frames go.
        es_frame: end-systole frame; ``None`` means T // 2.
    """

    def __init__(self, key: str = "cine", output_key: str = "image", es_frame: int | None = None) -> None:
        super().__init__(keys=key)
        self.key, self.output_key, self.es_frame = key, output_key, es_frame

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        d[self.output_key] = torch.from_numpy(read_cine_frames(d[self.key], self.es_frame))
        return d


class LoadLGEd(MapTransform):
    """Load the LGE slice at ``data[key]`` and write ``data[output_key]``: (1, H, W) float32 in [0, 1]."""

    def __init__(self, key: str = "lge", output_key: str = "lge_image") -> None:
        super().__init__(keys=key)
        self.key, self.output_key = key, output_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        d[self.output_key] = torch.from_numpy(read_lge(d[self.key]))[None]
        return d


class LoadMaskSliced(MapTransform):
    """Load slice ``data[index_key]`` of the per-case masks at ``data[k]`` for each key, as (1, H, W) float32 {0, 1}.

    Args:
        keys: datalist keys of per-case masks (S, H, W), e.g. ``["cine_myo", "cine_mi"]``.
        output_keys: where each mask slice goes, e.g. ``["myo", "label"]``.
        index_key: datalist key of the slice index.
    """

    def __init__(self, keys: Sequence[str], output_keys: Sequence[str], index_key: str = "slice_index") -> None:
        super().__init__(keys=keys)
        if len(output_keys) != len(self.keys):
            raise ValueError(f"{len(self.keys)} keys but {len(output_keys)} output keys")
        self.output_keys, self.index_key = list(output_keys), index_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key, out in zip(self.keys, self.output_keys):
            d[out] = torch.from_numpy(read_mask_slice(d[key], int(d[self.index_key])))[None]
        return d


class WarpByDDFd(MapTransform):
    """Warp ``data[k]`` (C, H, W) by the displacement ``data[ddf_key]`` (2, H, W) into ``data[output_key]``.

    Used after registration: the warped moving image is ``m(p + u(p))`` (:class:`monai.networks.blocks.Warp`,
    border padding); ``mode="nearest"`` for label maps.
    """

    def __init__(self, keys: Sequence[str], output_keys: Sequence[str], ddf_key: str = "pred", mode: str = "bilinear") -> None:
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


class SkipFailedd(Transform):
    """Apply ``transform`` to an item unless :class:`medzoo.data.GuardedDataset` flagged it as failed.

    A failed item holds placeholders without the preprocessing's history, so e.g. ``Invertd`` cannot run on it; the
    writers skip it anyway.
    """

    def __init__(self, transform: Callable[[dict], dict], error_key: str = "error") -> None:
        self.transform, self.error_key = transform, error_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        return dict(data) if data.get(self.error_key) else self.transform(data)
