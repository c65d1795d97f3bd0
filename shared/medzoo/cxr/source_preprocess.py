"""The preprocessing and calibration of the sources of converted chest X-ray weights, as those sources do them.

A bundle converted by ``medzoo convert`` (:mod:`medzoo.cxr.bundle_convert`) reads images with the loader of its
source instead of the zoo's :class:`~medzoo.cxr.transforms.LoadChestXRayd`, so that the same file gives the source's
network input:

- :class:`LoadXRVImaged`, torchxrayvision's documented pipeline (its README): ``skimage.io.imread``,
  ``xrv.datasets.normalize(img, 255)`` (``img.mean(2)`` for colour), ``XRayCenterCrop()`` (square crop of the long
  side), ``XRayResizer(224)`` (``skimage.transform.resize`` with ``mode="constant"``, ``preserve_range=True``, i.e.
  bilinear with Gaussian anti-aliasing, sigma ``(factor - 1) / 2``, zero padding). 16-bit PNGs are normalised with
  ``maxval=65535``, as torchxrayvision's loaders of 16-bit PNG data sets (PadChest) do; DICOM as
  ``xrv.utils.read_xray_dcm`` (``maxval = 2**BitsStored - 1``, MONOCHROME1 inverted). Output ``(1, size, size)``
  float32 in [-1024, 1024].
- :class:`LoadCheXNetImaged`, arnoweng/CheXNet's test pipeline without its ten-crop averaging: PIL
  ``Image.open(path).convert("RGB")``, torchvision ``Resize(256)`` (bilinear, shorter side), ``CenterCrop(224)``
  (the centre one of its ``TenCrop(224)``), ``ToTensor()``, ImageNet ``Normalize``. Pillow clips 16-bit values to
  255 in ``convert("RGB")``; instead a 16-bit image is first brought to 8 bits by ``round(v / 257)`` (the 8-bit PNG
  of the same image). DICOM: the zoo's reading (:func:`~medzoo.cxr.transforms.read_xray`), rounded to 8 bits.
  Output ``(3, crop, crop)`` float32.
- :class:`OperatingPointNormd`: torchxrayvision's ``op_norm`` calibration of probabilities by per-label operating
  points (``op_threshs``), which its pretrained DenseNets apply after the sigmoid.

Both loaders raise :class:`~medzoo.cxr.transforms.ImageReadError` naming the file for missing, empty, undecodable,
too large or unsupported (32-bit float) images. An alpha channel is dropped (torchxrayvision's README recipe would
average it in with ``img.mean(2)``); palette and CMYK images are read as RGB.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from medzoo.cxr.transforms import INPUT_PRESETS, ImageReadError, checked_xray_path, read_xray

__all__ = [
    "LoadCheXNetImaged",
    "LoadXRVImaged",
    "OperatingPointNormd",
    "op_norm",
    "read_chexnet_image",
    "read_xrv_image",
    "xrv_center_crop",
    "xrv_normalize",
    "xrv_resize",
]

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def _open_pil(path: str):
    """The decoded Pillow image of ``path`` (fully loaded); ImageReadError for undecodable, too large or float files."""
    from PIL import Image, UnidentifiedImageError

    with open(path, "rb") as f:
        data = f.read()
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: image too large to decode safely ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from e
    if img.mode == "F":
        raise ImageReadError(f"{path}: 32-bit float images are not supported")
    return img


def _native(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(pixels.dtype.newbyteorder("="), copy=False)


# ---------------------------------------------------------------------------------------------- torchxrayvision


def xrv_normalize(img: np.ndarray, maxval: float) -> np.ndarray:
    """torchxrayvision's ``normalize(img, maxval)``: ``(2 * img / maxval - 1) * 1024`` in float32, same shape.

    Raises:
        ValueError: a value above ``maxval``.
    """
    if img.max() > maxval:
        raise ValueError(f"max image value ({img.max()}) higher than expected bound ({maxval})")
    return (2 * (img.astype(np.float32) / maxval) - 1.0) * 1024


def xrv_center_crop(img: np.ndarray) -> np.ndarray:
    """torchxrayvision's ``XRayCenterCrop``: (1, H, W) -> the centred (1, S, S) square, S = min(H, W)."""
    _, height, width = img.shape
    side = min(height, width)
    top, left = height // 2 - side // 2, width // 2 - side // 2
    return img[:, top : top + side, left : left + side]


def xrv_resize(img: np.ndarray, size: int) -> np.ndarray:
    """torchxrayvision's ``XRayResizer(size)`` (default engine): (1, H, W) -> (1, size, size) float32.

    ``skimage.transform.resize(img, (1, size, size), mode="constant", preserve_range=True)``: bilinear, with a
    Gaussian pre-filter of sigma ``(H / size - 1) / 2`` when shrinking, zeros outside the image.
    """
    try:
        import skimage.transform
    except ImportError as e:
        raise ImportError(
            "bundles converted from torchxrayvision resize with scikit-image, as torchxrayvision does: "
            "pip install scikit-image"
        ) from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return skimage.transform.resize(img, (1, size, size), mode="constant", preserve_range=True).astype(np.float32)


def _read_xrv_dicom(path: str) -> np.ndarray:
    """``xrv.utils.read_xray_dcm(path)``: (H, W) float32 in [-1024, 1024] from ``2**BitsStored - 1``."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
        interpretation = ds.PhotometricInterpretation
        if interpretation not in ("MONOCHROME1", "MONOCHROME2"):
            raise ImageReadError(f"{path}: DICOM PhotometricInterpretation {interpretation} is not supported")
        maxval = 2 ** int(ds.BitsStored) - 1
        data = ds.pixel_array
    except ImageReadError:
        raise
    except Exception as e:
        raise ImageReadError(f"{path}: not a readable DICOM radiograph ({e})") from e
    if data.ndim != 2:
        raise ImageReadError(f"{path}: DICOM pixel data of shape {data.shape} is not a single radiograph")
    if interpretation == "MONOCHROME1":
        data = maxval - data
    return xrv_normalize(data, maxval)


def read_xrv_image(path: str | os.PathLike) -> np.ndarray:
    """Read a radiograph as torchxrayvision's documented recipe does: (1, H, W) float32 in [-1024, 1024].

    8-bit gray: ``normalize(img, 255)``; 8-bit colour: ``normalize(img, 255).mean(2)`` (alpha dropped first);
    16-bit gray: ``normalize(img, 65535)``; DICOM: ``read_xray_dcm``. A 2D result gets the channel axis in front.

    Raises:
        ImageReadError: the file cannot be used (message starts with its path).
    """
    path, is_dicom = checked_xray_path(path)
    if is_dicom:
        return _read_xrv_dicom(path)[None]
    img = _open_pil(path)
    if img.mode in _SIXTEEN_BIT_MODES:
        pixels, maxval = _native(np.asarray(img)), 65535
    elif img.mode in ("L", "LA", "1"):
        pixels, maxval = np.asarray(img.getchannel(0).convert("L")), 255
    else:  # RGB(A), palette, CMYK, YCbCr, ...: the three colour channels
        pixels, maxval = np.asarray(img.convert("RGB")), 255
    try:
        normalised = xrv_normalize(pixels, maxval)
    except ValueError as e:  # an "I" image with values above 16 bits
        raise ImageReadError(f"{path}: {e}") from None
    return (normalised.mean(2) if normalised.ndim == 3 else normalised)[None]


class LoadXRVImaged(MapTransform):
    """Replace the file path under each key with torchxrayvision's network input, a (1, size, size) MetaTensor.

    :func:`read_xrv_image`, :func:`xrv_center_crop`, :func:`xrv_resize`; the path is kept in
    ``meta["filename_or_obj"]``.

    Example::

        LoadXRVImaged(keys="image")({"image": "images/00000001_000.png"})["image"].shape  # (1, 224, 224)
    """

    def __init__(self, keys: KeysCollection, size: int = 224, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.size = int(size)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            image = xrv_resize(xrv_center_crop(read_xrv_image(path)), self.size)
            d[key] = MetaTensor(torch.from_numpy(image), meta={"filename_or_obj": path})
        return d


# ---------------------------------------------------------------------------------------------- CheXNet


def read_chexnet_image(path: str | os.PathLike):
    """The 8-bit RGB Pillow image CheXNet's ``Image.open(path).convert("RGB")`` gives, with 16-bit images first
    brought to 8 bits by ``round(v / 257)`` and DICOM read by :func:`~medzoo.cxr.transforms.read_xray`.

    Raises:
        ImageReadError: the file cannot be used (message starts with its path).
    """
    from PIL import Image

    path, is_dicom = checked_xray_path(path)
    if is_dicom:
        return Image.fromarray(np.round(read_xray(path)).astype(np.uint8)).convert("RGB")
    img = _open_pil(path)
    if img.mode in _SIXTEEN_BIT_MODES:
        pixels = _native(np.asarray(img)).astype(np.int64)
        if pixels.min() < 0 or pixels.max() > 65535:
            raise ImageReadError(f"{path}: pixel values outside the 16-bit range [0, 65535]")
        img = Image.fromarray(((pixels + 128) // 257).astype(np.uint8))  # round(v / 257): 257 is odd, no ties
    return img.convert("RGB")


class LoadCheXNetImaged(MapTransform):
    """Replace the file path under each key with CheXNet's network input, a (3, crop, crop) MetaTensor.

    :func:`read_chexnet_image`, then torchvision ``Resize(resize)``, ``CenterCrop(crop)``, ``ToTensor()`` and
    ``Normalize`` with ImageNet's mean and std (``INPUT_PRESETS["chexnet"]``); the path is kept in
    ``meta["filename_or_obj"]``.
    """

    def __init__(
        self, keys: KeysCollection, resize: int = 256, crop: int = 224, allow_missing_keys: bool = False
    ) -> None:
        from torchvision import transforms

        super().__init__(keys, allow_missing_keys)
        preset = INPUT_PRESETS["chexnet"]
        self.pipeline = transforms.Compose(
            [
                transforms.Resize(int(resize)),
                transforms.CenterCrop(int(crop)),
                transforms.ToTensor(),
                transforms.Normalize(preset["mean"], preset["std"]),
            ]
        )

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            d[key] = MetaTensor(self.pipeline(read_chexnet_image(path)), meta={"filename_or_obj": path})
        return d


# ---------------------------------------------------------------------------------------------- calibration


def op_norm(probabilities: torch.Tensor, op_threshs: torch.Tensor) -> torch.Tensor:
    """torchxrayvision's ``op_norm``: map each label's operating point to 0.5, piecewise linearly.

    Args:
        probabilities: sigmoid outputs [..., L].
        op_threshs: operating point per label [L]; NaN marks a label without one, whose output becomes 0.5.

    Returns:
        ``p / (2 t)`` where ``p < t``, else ``1 - (1 - p) / (2 (1 - t))``; 0.5 where ``t`` is NaN. Same shape.
    """
    t = op_threshs.to(probabilities).expand_as(probabilities)
    below = probabilities / (t * 2)
    above = 1.0 - ((1.0 - probabilities) / ((1 - t) * 2))
    out = torch.where(probabilities < t, below, above)
    return torch.where(torch.isnan(t), torch.full_like(out, 0.5), out)


class OperatingPointNormd(MapTransform):
    """Apply :func:`op_norm` to probabilities (after the sigmoid) under each key.

    Args:
        op_threshs: one operating point per output label, in the output's label order; ``None`` (JSON ``null``) for
            a label without one.
    """

    def __init__(
        self, keys: KeysCollection, op_threshs: Sequence[float | None], allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.op_threshs = torch.tensor([float("nan") if t is None else float(t) for t in op_threshs])

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            if pred.shape[-1] != len(self.op_threshs):
                raise ValueError(f"'{key}' has {pred.shape[-1]} outputs, op_threshs {len(self.op_threshs)}")
            d[key] = op_norm(pred, self.op_threshs)
        return d
