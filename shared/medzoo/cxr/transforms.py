"""Chest X-ray reading and intensity presets.

Every chest X-ray bundle reads images with :class:`LoadChestXRayd` (PNG, JPEG or DICOM; grayscale, RGB(A) or 16-bit)
into a ``(1, H, W)`` float32 tensor of 8-bit-equivalent pixel values in [0, 255], rows first as in the file, and
then maps intensities with :class:`ChestXRayIntensityd` according to the input preset of the weights in use.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from medzoo.io_checks import InputFileError, check_input_file

__all__ = ["ImageReadError", "read_xray", "LoadChestXRayd", "ChestXRayIntensityd", "INPUT_PRESETS", "IMAGE_EXTENSIONS", "ChestXRayIntensity"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")

def _preset(in_channels: int, mean: list[float], std: list[float], description: str) -> dict:
    """An input preset as plain JSON-serialisable data; ``value_range`` is the range of the network input."""
    return {
        "in_channels": in_channels,
        "pixel_max": 255.0,
        "mean": mean,
        "std": std,
        "value_range": [min(-m / s for m, s in zip(mean, std)), max((1.0 - m) / s for m, s in zip(mean, std))],
        "description": description,
    }


#: Network input per preset: for pixel values in [0, ``pixel_max``], channel ``c`` of the input is
#: ``(pixel / pixel_max - mean[c]) / std[c]`` (a grayscale image is replicated to ``in_channels``).
#: ``zoo``: the zoo's own bundles; ``chexnet`` and ``xrv``: weights converted from those sources (see ``convert``).
INPUT_PRESETS: dict[str, dict] = {
    "zoo": _preset(1, mean=[0.0], std=[1.0], description="single channel, pixel / 255"),
    "chexnet": _preset(
        3,
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
        description="grayscale replicated to RGB, pixel / 255, then ImageNet mean/std per channel",
    ),
    "xrv": _preset(
        1,
        mean=[0.5],
        std=[1.0 / 2048.0],
        description="single channel, (2 * pixel / 255 - 1) * 1024, as torchxrayvision's normalize(img, 255)",
    ),
}


class ImageReadError(InputFileError):
    """An input image that cannot be used; the message names the file and the problem."""


def _to_gray_255(pixels: np.ndarray, path: str) -> np.ndarray:
    """(H, W[, C]) array of any integer or float type -> (H, W) float32 in [0, 255]."""
    if pixels.ndim == 3:
        channels = pixels.shape[-1]
        if channels == 4:  # RGBA: drop alpha
            pixels = pixels[..., :3]
        elif channels not in (1, 3):
            raise ImageReadError(f"{path}: expected 1, 3 or 4 channels, got {channels}")
        pixels = pixels.astype(np.float32)
        # ITU-R BT.601 luma for colour images; a single channel is used as it is
        pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels @ np.array([0.299, 0.587, 0.114], np.float32)
    elif pixels.ndim != 2:
        raise ImageReadError(f"{path}: expected a 2D image, got an array of shape {pixels.shape}")
    if pixels.shape[0] < 8 or pixels.shape[1] < 8:
        raise ImageReadError(f"{path}: image of shape {pixels.shape} is too small to be a radiograph")
    return pixels.astype(np.float32)


def _read_pil(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # decodes everything: truncated files fail here, not later
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                pixels = np.asarray(img, dtype=np.float32)
                return pixels * np.float32(255.0 / 65535.0)
            if mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif mode not in ("L", "RGB", "RGBA", "LA", "F"):
                img = img.convert("RGB")
            pixels = np.asarray(img)
            if mode == "LA":
                pixels = pixels[..., 0]
            if mode == "F":
                raise ImageReadError(f"{path}: 32-bit float PNG/TIFF images are not supported")
            return pixels
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: image too large to decode safely ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from e


def _read_dicom(path: str) -> np.ndarray:
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as e:
        raise ImageReadError(f"{path}: not a readable DICOM file ({e})") from e
    if "PixelData" not in ds:
        raise ImageReadError(f"{path}: DICOM file has no pixel data")
    try:
        pixels = ds.pixel_array.astype(np.float64)
    except Exception as e:
        raise ImageReadError(f"{path}: DICOM pixel data cannot be decoded ({e})") from e
    slope, intercept = float(getattr(ds, "RescaleSlope", 1.0)), float(getattr(ds, "RescaleIntercept", 0.0))
    pixels = pixels * slope + intercept
    if not np.isfinite(pixels).all():  # checked before windowing, which would turn NaN into a blank image
        raise ImageReadError(f"{path}: image contains NaN or infinite values (pixel data or rescale slope/intercept)")
    if pixels.ndim == 3 and getattr(ds, "SamplesPerPixel", 1) == 1:
        raise ImageReadError(f"{path}: multi-frame DICOM ({pixels.shape[0]} frames) is not a single radiograph")
    low, high = float(pixels.min()), float(pixels.max())
    pixels = (pixels - low) / (high - low) * 255.0 if high > low else np.zeros_like(pixels)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":  # bright = low values: invert
        pixels = 255.0 - pixels
    return pixels.astype(np.float32)


def read_xray(path: str | os.PathLike) -> np.ndarray:
    """Read a radiograph into a (H, W) float32 array in [0, 255].

    8-bit images are used as they are, 16-bit images scaled by 255 / 65535, DICOM windowed to its own min-max
    (MONOCHROME1 inverted); colour images become BT.601 luma and an alpha channel is dropped.

    Very large images are read (up to Pillow's decompression-bomb limit, ``PIL.Image.MAX_IMAGE_PIXELS``, about
    89 megapixels; twice that is refused) and resized by the bundle's preprocessing.

    Raises:
        ImageReadError: missing, empty, truncated, undecodable, non-finite, too large, or not a 2D image.
    """
    path = str(path)
    try:
        check_input_file(path)
    except InputFileError as e:
        raise ImageReadError(str(e)) from None
    with open(path, "rb") as f:
        head = f.read(132)
    is_dicom = head[128:132] == b"DICM" or Path(path).suffix.lower() in (".dcm", ".dicom")
    pixels = _to_gray_255(_read_dicom(path) if is_dicom else _read_pil(path), path)
    if not np.isfinite(pixels).all():
        raise ImageReadError(f"{path}: image contains NaN or infinite values")
    return pixels


class LoadChestXRayd(MapTransform):
    """Replace the file path under each key with a ``(1, H, W)`` float32 :class:`MetaTensor` in [0, 255].

    The path is kept in ``meta["filename_or_obj"]``. Errors are :class:`ImageReadError` naming the file.

    Example::

        LoadChestXRayd(keys="image")({"image": "images/00000001_000.png"})["image"].shape  # (1, 1024, 1024)
    """

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            d[key] = MetaTensor(torch.from_numpy(read_xray(path))[None], meta={"filename_or_obj": path})
        return d


class ChestXRayIntensity(Transform):
    """Map a ``(1, H, W)`` image in [0, 255] to network input ``(C, H, W)`` following an :data:`INPUT_PRESETS` entry."""

    def __init__(self, preset: str = "zoo") -> None:
        if preset not in INPUT_PRESETS:
            raise ValueError(f"unknown input preset '{preset}'; choose one of {sorted(INPUT_PRESETS)}")
        self.preset = preset

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 3 or img.shape[0] != 1:
            raise ValueError(f"expected a (1, H, W) image, got shape {tuple(img.shape)}")
        spec = INPUT_PRESETS[self.preset]
        mean = torch.tensor(spec["mean"], dtype=img.dtype).view(-1, 1, 1)
        std = torch.tensor(spec["std"], dtype=img.dtype).view(-1, 1, 1)
        return (img.expand(spec["in_channels"], -1, -1) / spec["pixel_max"] - mean) / std


class ChestXRayIntensityd(MapTransform):
    """Dictionary version of :class:`ChestXRayIntensity`."""

    def __init__(self, keys: KeysCollection, preset: str = "zoo", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = ChestXRayIntensity(preset)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
