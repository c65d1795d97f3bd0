"""Chest X-ray reading and intensity presets.

Every chest X-ray bundle reads images with :class:`LoadChestXRayd` (PNG, JPEG or DICOM; grayscale, RGB(A) or 16-bit)
into a ``(1, H, W)`` float32 tensor of 8-bit-equivalent pixel values in [0, 255], rows first as in the file, resized
to the network's ``spatial_size`` while reading (box-filter averaging, so the full-resolution image never becomes a
tensor), and then maps intensities with :class:`ChestXRayIntensityd` according to the input preset of the weights in
use.
"""

from __future__ import annotations

import io
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type

from medzoo.cxr.resize import box_resize
from medzoo.io_checks import InputFileError, check_input_file

__all__ = [
    "ImageReadError",
    "checked_xray_path",
    "read_xray",
    "LoadChestXRayd",
    "ChestXRayIntensityd",
    "INPUT_PRESETS",
    "IMAGE_EXTENSIONS",
    "ChestXRayIntensity",
]

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
    """(H, W[, C]) array of any integer or float type -> (H, W) float32 (BT.601 luma for colour, alpha dropped)."""
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
    return pixels.astype(np.float32)


_SIXTEEN_BIT_TO_8_BIT = 255.0 / 65535.0
#: Pillow modes read as one channel, and the factor that brings them to the 8-bit range.
_GRAY_MODES = {"L": 1.0, **dict.fromkeys(("I;16", "I;16B", "I;16L", "I"), _SIXTEEN_BIT_TO_8_BIT)}


def _read_stored_gray(path: str) -> tuple[np.ndarray, float]:
    """Decode a PNG/JPEG/... into (H, W) gray pixels as stored, and the factor that brings them to [0, 255].

    Non-interlaced 8- and 16-bit grayscale PNGs are decoded by :func:`medzoo.cxr.png.decode_gray_png` (ISA-L
    inflation, the same pixels as Pillow in less than half the time), every other file by Pillow. Gray images stay in
    their stored integer type (uint8, or uint16 / int32 with factor 255 / 65535), gray + alpha keeps the gray
    channel, colour becomes float32 BT.601 luma inside Pillow (alpha dropped).
    """
    from PIL import Image, UnidentifiedImageError

    from medzoo.cxr.png import PNGDecodeError, decode_gray_png

    with open(path, "rb") as f:
        data = f.read()
    bomb_limit = None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS  # Pillow's refusal point
    try:
        pixels = decode_gray_png(data, max_pixels=bomb_limit)
    except PNGDecodeError as e:
        raise ImageReadError(f"{path}: {e}") from None
    if pixels is not None:
        return pixels, 1.0 if pixels.dtype == np.uint8 else _SIXTEEN_BIT_TO_8_BIT
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decodes everything: truncated files fail here, not later
            if img.mode == "F":
                raise ImageReadError(f"{path}: 32-bit float PNG/TIFF images are not supported")
            if img.mode in _GRAY_MODES:
                pixels, to_8_bit = np.asarray(img), _GRAY_MODES[img.mode]
            elif img.mode == "LA":
                pixels, to_8_bit = np.asarray(img.getchannel(0)), 1.0
            else:  # RGB(A), palette, CMYK, ...: alpha dropped, then luma (Pillow's "F" conversion uses BT.601 weights)
                pixels, to_8_bit = np.asarray(img.convert("RGB").convert("F")), 1.0
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: image too large to decode safely ({e})") from e
    except UnidentifiedImageError:  # Pillow's message names the in-memory buffer, not the file
        raise ImageReadError(
            f"{path}: not a readable image: no image format Pillow knows (the file starts with "
            f"{data[:16]!r}); pass PNG, JPEG, TIFF or DICOM files"
        ) from None
    except (OSError, SyntaxError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from e
    return pixels.astype(pixels.dtype.newbyteorder("="), copy=False), to_8_bit  # native byte order for the resize


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


def _checked_size(spatial_size: Sequence[int]) -> tuple[int, int]:
    if len(spatial_size) != 2 or min(spatial_size) < 1:
        raise ValueError(f"spatial_size must be two positive sizes (h, w), got {spatial_size}")
    return int(spatial_size[0]), int(spatial_size[1])


def checked_xray_path(path: str | os.PathLike) -> tuple[str, bool]:
    """The path as a string and whether it is a DICOM file (preamble ``DICM`` or suffix); ImageReadError if unusable."""
    path = str(path)
    try:
        check_input_file(path)
    except InputFileError as e:
        raise ImageReadError(str(e)) from None
    with open(path, "rb") as f:
        head = f.read(132)
    return path, head[128:132] == b"DICM" or Path(path).suffix.lower() in (".dcm", ".dicom")


def read_xray(path: str | os.PathLike, spatial_size: Sequence[int] | None = None) -> np.ndarray:
    """Read a radiograph into a (H, W) float32 array in [0, 255], or ``spatial_size`` ``(h, w)`` if given.

    8-bit images are used as they are, 16-bit images scaled by 255 / 65535, DICOM windowed to its own min-max
    (MONOCHROME1 inverted); colour images become BT.601 luma and an alpha channel is dropped. With ``spatial_size``
    the stored pixels are resized with a box filter (:func:`medzoo.cxr.resize.box_resize`, Pillow's ``BOX`` weights):
    each output pixel is the mean of the input pixels whose centres fall inside it (a plain block mean for integer
    factors), then scaled to [0, 255].

    Very large images are read (up to Pillow's decompression-bomb limit, ``PIL.Image.MAX_IMAGE_PIXELS``, about
    89 megapixels; twice that is refused).

    Raises:
        ImageReadError: missing, empty, truncated, undecodable, non-finite, too large, or not a 2D image.
    """
    path, is_dicom = checked_xray_path(path)
    pixels, to_8_bit = (_to_gray_255(_read_dicom(path), path), 1.0) if is_dicom else _read_stored_gray(path)
    if pixels.shape[0] < 8 or pixels.shape[1] < 8:
        raise ImageReadError(f"{path}: image of shape {pixels.shape} is too small to be a radiograph")
    # a new float32 array either way; finite: integer formats, DICOM checked when read
    image = pixels.astype(np.float32) if spatial_size is None else box_resize(pixels, _checked_size(spatial_size))
    if to_8_bit != 1.0:
        image *= np.float32(to_8_bit)
    return image


class LoadChestXRayd(MapTransform):
    """Replace the file path under each key with a ``(1, H, W)`` float32 :class:`MetaTensor` in [0, 255].

    With ``spatial_size`` ``(h, w)`` the image is resized with a box filter while it is read (:func:`read_xray`), as
    the bundles' preprocessing does: the full-size image never becomes a tensor. The path is kept in
    ``meta["filename_or_obj"]``. Errors are :class:`ImageReadError` naming the file.

    Example::

        LoadChestXRayd(keys="image")({"image": "images/00000001_000.png"})["image"].shape  # (1, 1024, 1024)
        LoadChestXRayd(keys="image", spatial_size=(224, 224))({"image": "images/00000001_000.png"})["image"].shape
        # (1, 224, 224)
    """

    def __init__(
        self, keys: KeysCollection, spatial_size: Sequence[int] | None = None, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_size = None if spatial_size is None else _checked_size(spatial_size)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            d[key] = MetaTensor(
                torch.from_numpy(read_xray(path, self.spatial_size))[None], meta={"filename_or_obj": path}
            )
        return d


class ChestXRayIntensity(Transform):
    """Map a ``(1, H, W)`` image in [0, 255] to network input ``(C, H, W)`` following an :data:`INPUT_PRESETS` entry.

    The arithmetic runs on the plain tensor, in float32 for integer pixels and in the input's type otherwise; a
    :class:`MetaTensor` input gives a :class:`MetaTensor` with its metadata.
    """

    def __init__(self, preset: str = "zoo") -> None:
        if preset not in INPUT_PRESETS:
            raise ValueError(f"unknown input preset '{preset}'; choose one of {sorted(INPUT_PRESETS)}")
        self.preset = preset
        spec = INPUT_PRESETS[preset]
        self.channels, self.pixel_max = spec["in_channels"], spec["pixel_max"]
        self.mean = torch.tensor(spec["mean"]).view(-1, 1, 1)
        self.std = torch.tensor(spec["std"]).view(-1, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 3 or img.shape[0] != 1:
            raise ValueError(f"expected a (1, H, W) image, got shape {tuple(img.shape)}")
        plain = img.as_tensor() if isinstance(img, MetaTensor) else img
        if not plain.is_floating_point():  # integer pixels: the mean and std would be truncated to the input's type
            plain = plain.float()
        out = (plain.expand(self.channels, -1, -1) / self.pixel_max - self.mean.to(plain.dtype)) / self.std.to(
            plain.dtype
        )
        return convert_to_dst_type(out, img, dtype=out.dtype)[0]  # a MetaTensor input keeps its metadata


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
