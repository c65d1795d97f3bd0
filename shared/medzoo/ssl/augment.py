"""Augmentations for contrastive pretraining: a random resized crop and two independently augmented views.

The rest of the SimCLR/REMEDIS pipeline (rotation, brightness/contrast, blur, histogram equalisation, elastic
deformation) is made of MONAI transforms in the bundle config; see ``bundles/cxr_simclr_pretraining``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable, Resize, SpatialCrop
from monai.transforms.traits import RandomizableTrait

__all__ = ["RandResizedCropd", "TwoViewsd"]


class RandResizedCropd(Randomizable, MapTransform):
    """Crop a random area and aspect ratio of a ``(C, H, W)`` image and resize it to ``spatial_size``.

    The crop covers a fraction of the image area drawn uniformly from ``scale`` with an aspect ratio (width / height)
    drawn log-uniformly from ``ratio``, as in SimCLR's (and torchvision's) random resized crop; after 10 draws that do
    not fit, the largest centred crop within ``ratio`` is taken. With probability ``1 - prob`` the whole image is
    resized instead. Every key gets the same crop. MONAI has no crop with this area/aspect sampling, hence this class.

    Args:
        keys: keys of the images to crop.
        spatial_size: output ``(H, W)``.
        scale: range of the cropped fraction of the area, within (0, 1].
        ratio: range of the aspect ratio width / height.
        prob: probability of cropping (otherwise: resize only).
        mode: interpolation of the resize (``"area"``, ``"bilinear"``, ...).

    Example::

        crop = RandResizedCropd("image", spatial_size=(224, 224))
        crop({"image": torch.rand(1, 512, 512)})["image"].shape  # (1, 224, 224)
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int],
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        prob: float = 1.0,
        mode: str = "area",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
        if not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {tuple(ratio)}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.scale, self.ratio, self.prob = tuple(scale), tuple(ratio), prob
        self.resize = Resize(spatial_size=tuple(spatial_size), mode=mode)
        self._box: tuple[int, int, int, int] | None = None

    def _crop_box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """``(top, left, h, w)`` of the crop, or None to keep the whole image."""
        if self.R.rand() >= self.prob:
            return None
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * self.R.uniform(*self.scale)
            aspect = math.exp(self.R.uniform(*log_ratio))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return int(self.R.randint(0, height - h + 1)), int(self.R.randint(0, width - w + 1)), h, w
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif aspect > self.ratio[1]:
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def randomize(self, data: tuple[int, int]) -> None:
        self._box = self._crop_box(*data)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        first = next(self.key_iterator(d), None)
        if first is None:
            return d
        self.randomize(tuple(d[first].shape[-2:]))
        for key in self.key_iterator(d):
            img = d[key]
            if img.ndim != 3:
                raise ValueError(
                    f"RandResizedCropd expects a (C, H, W) image under '{key}', got shape {tuple(img.shape)}"
                )
            if self._box is not None:
                top, left, h, w = self._box
                img = SpatialCrop(roi_start=(top, left), roi_end=(top + h, left + w))(img)
            d[key] = self.resize(img)
        return d


class TwoViewsd(RandomizableTrait, MapTransform):
    """Apply the same random ``transform`` twice, independently, to make two views of one image.

    ``transform`` works on ``source_key`` (e.g. a :class:`~monai.transforms.Compose` of random MONAI transforms on
    ``"image"``); its random state advances between the two calls, so the views differ. The output keeps the other
    keys and holds the views under ``view_keys``; ``source_key`` is dropped unless ``keep_source``. It is marked
    random, so a :class:`~monai.data.CacheDataset` caches the item before it, and a DataLoader worker seeds the
    random state of ``transform``.

    Args:
        transform: the augmentation pipeline applied to each view.
        source_key: key of the image to augment, ``(C, H, W)``.
        view_keys: names of the two views.
        keep_source: keep the un-augmented image as well.

    Example::

        views = TwoViewsd(Compose([RandRotated("image", range_x=0.3, prob=1.0)]))({"image": torch.rand(1, 64, 64)})
        views["view1"].shape, views["view2"].shape  # (1, 64, 64) each, different rotations
    """

    def __init__(
        self,
        transform: Callable[[dict], dict],
        source_key: str = "image",
        view_keys: Sequence[str] = ("view1", "view2"),
        keep_source: bool = False,
    ) -> None:
        super().__init__(keys=source_key)
        if len(view_keys) != 2 or view_keys[0] == view_keys[1]:
            raise ValueError(f"view_keys must be two different names, got {list(view_keys)}")
        self.transform = transform
        self.source_key = source_key
        self.view_keys = tuple(view_keys)
        self.keep_source = keep_source

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        if self.source_key not in d:
            raise KeyError(f"TwoViewsd: no '{self.source_key}' in the item (keys: {sorted(map(str, d))})")
        for name in self.view_keys:
            item = {self.source_key: copy.deepcopy(d[self.source_key])}
            d[name] = self.transform(item)[self.source_key]
        if not self.keep_source:
            del d[self.source_key]
        return d
