"""Checked reading and atomic writing of input files, for every bundle and input kind.

Each reader either returns usable data or raises :class:`InputFileError` whose message starts with the file's path
and says what is wrong (missing, empty, truncated, not that format, non-finite values, wrong dimensionality or
channel count). :class:`medzoo.data.GuardedDataset` turns such an error into an error row while the other inputs of
the run go on. The 2D chest X-ray reader (:func:`medzoo.cxr.transforms.read_xray`) shares :func:`check_input_file`.

NIfTI helpers for cine MR ``(T, H, W)`` and 3D volumes ``(H, W, D)``:

- :func:`read_nifti`: array and affine, checked;
- :func:`load_nifti_image` / :func:`read_nifti_header`: a single-file NIfTI-1 or NIfTI-2 image, decompressed in one
  call with ISA-L (``isal``), or its header alone;
- :class:`LoadNiftid`: the MONAI-style dictionary transform for configs, giving a channel-first ``MetaTensor``;
- :func:`save_nifti`: atomic write (temporary file + rename), so a failure never leaves a half-written NIfTI.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImaged, MapTransform

from .errors import UserValueError
from .fileio import atomic_path

if TYPE_CHECKING:  # nibabel is imported where it is used: the chest X-ray bundles do not list it
    import nibabel as nib

__all__ = [
    "CHECKED_LOADERS",
    "NIFTI_EXTENSIONS",
    "CheckedLoadImaged",
    "InputFileError",
    "LoadNiftid",
    "check_input_file",
    "load_nifti_image",
    "read_nifti",
    "read_nifti_header",
    "save_nifti",
]

NIFTI_EXTENSIONS = (".nii", ".nii.gz")


class InputFileError(UserValueError):
    """An input file that cannot be used; the message starts with the file's path and names the problem.

    A user mistake (:class:`medzoo.errors.UserError`): where it stops a command (training, a one-file command), the
    command ends with that one line; in an inference run :class:`medzoo.data.GuardedDataset` reports it per file.
    """


#: The loaders an inference config may read its inputs with (the first transform of its ``preprocessing``): each
#: raises :class:`InputFileError` naming the file for a missing, empty, unreadable, truncated, non-finite or
#: wrongly shaped input (``medzoo.hardening_checks.check_hardening`` holds every bundle to them).
CHECKED_LOADERS = (
    "medzoo.io_checks.LoadNiftid",
    "medzoo.io_checks.CheckedLoadImaged",
    "medzoo.cxr.transforms.LoadChestXRayd",
    "medzoo.volume.transforms.LoadVolumed",
    "medzoo.cmr.transforms.LoadCineFramesd",
    "medzoo.cmr.transforms.LoadLGEd",
    "medzoo.cmr.transforms.LoadMaskSliced",
)


def check_input_file(path: str | os.PathLike) -> Path:
    """The path, if it is an existing, non-empty regular file.

    Raises:
        InputFileError: missing, a folder, or 0 bytes.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: file not found")
    if not path.is_file():
        raise InputFileError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: file is empty (0 bytes)")
    return path


_GZIP_MAGIC = b"\x1f\x8b"


def _single_file_image_class(block: bytes) -> type[nib.Nifti1Image]:
    """NIfTI-1 or NIfTI-2 image class of a file starting with ``block`` (at least 540 bytes, when the file has them)."""
    import nibabel as nib

    for image_class in (nib.Nifti1Image, nib.Nifti2Image):
        if image_class.header_class.may_contain_header(block[: image_class.header_class.sizeof_hdr]):
            return image_class
    raise ValueError("no single-file NIfTI-1 or NIfTI-2 header")


def load_nifti_image(path: str | os.PathLike) -> nib.Nifti1Image:
    """The NIfTI-1 or NIfTI-2 image in ``path`` (``.nii``, or gzipped), decompressed in one call.

    nibabel's ``load`` streams a gzipped file through many small reads; here the whole gzip stream is inflated at
    once by Intel's ISA-L (``isal.igzip``), the same bytes as Python's ``gzip``
    (``benchmarks/nifti_decompression.py`` compares the two into ``docs/nifti_decompression.md``).

    Raises:
        EOFError, gzip.BadGzipFile or ``isal.isal_zlib.error``: a truncated or corrupt gzip stream
            (:func:`read_nifti` turns them into an :class:`InputFileError`).
    """
    from isal import igzip

    raw = Path(path).read_bytes()
    if raw.startswith(_GZIP_MAGIC):
        raw = igzip.decompress(raw)
    return _single_file_image_class(raw).from_bytes(raw)


def _corrupt_gzip_errors() -> tuple[type[BaseException], ...]:
    """The exceptions of ``isal.igzip.decompress`` on a truncated or corrupt gzip stream: a cut stream, a failed
    checksum (``BadGzipFile``, a subclass of Python's) and an undecodable deflate stream (ISA-L's own error)."""
    from isal import isal_zlib

    return EOFError, gzip.BadGzipFile, isal_zlib.error


def read_nifti_header(path: str | os.PathLike) -> nib.Nifti1Header:
    """The header of the single-file NIfTI-1 or NIfTI-2 file at ``path`` (``.nii``, or gzipped), without its data.

    Reads the header bytes only, not the image data: writers need only the header.
    """
    import nibabel as nib

    path = Path(path)
    with open(path, "rb") as raw:
        gzipped = raw.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC
        raw.seek(0)
        block = (gzip.GzipFile(fileobj=raw) if gzipped else raw).read(nib.Nifti2Header.sizeof_hdr)
    try:
        header_class = _single_file_image_class(block).header_class
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    return header_class(binaryblock=block[: header_class.sizeof_hdr])


def _ndims(ndim: int | Sequence[int]) -> tuple[int, ...]:
    return (ndim,) if isinstance(ndim, int) else tuple(ndim)


def read_nifti(
    path: str | os.PathLike,
    ndim: int | Sequence[int],
    channels: int | None = None,
    allow_nonfinite: bool = False,
    dtype: np.dtype = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file into ``(array, affine)`` after checking it.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        ndim: the expected number of spatial (or spatio-temporal) axes, e.g. 3 for a ``(H, W, D)`` volume or a
            ``(T, H, W)`` cine stack; several values allowed as a sequence.
        channels: if set, the array may carry this many channels on one extra last axis (NIfTI stores channels after
            the spatial axes); ``channels=1`` also accepts an array without that axis. If None, no extra axis.
        allow_nonfinite: accept NaN/Inf values (e.g. for a map where they mean "undefined"); off by default.
        dtype: dtype of the returned array.

    Returns:
        The array (``ndim`` axes, plus the channel axis if present) and the 4x4 affine.

    Raises:
        InputFileError: missing, empty, not NIfTI (e.g. a text file named ``.nii.gz``), truncated, NaN/Inf values,
            wrong number of axes or channels.
    """
    import nibabel as nib

    path = check_input_file(path)
    try:
        image = load_nifti_image(path)
    except _corrupt_gzip_errors() as e:
        raise InputFileError(f"{path}: image data cannot be read, the file is truncated or corrupt ({e})") from e
    except (OSError, ValueError, nib.spatialimages.HeaderDataError) as e:
        raise InputFileError(f"{path}: not a readable NIfTI file ({e})") from e
    try:
        data = np.asarray(image.dataobj, dtype=dtype)
    except (OSError, EOFError, ValueError, MemoryError) as e:
        raise InputFileError(f"{path}: image data cannot be read, the file is truncated or corrupt ({e})") from e
    expected = _ndims(ndim)
    with_channel = channels is not None and data.ndim - 1 in expected and data.ndim not in expected
    if data.ndim not in expected and not with_channel:
        extra = f" (+ a last axis of {channels} channels)" if channels is not None else ""
        raise InputFileError(f"{path}: expected {' or '.join(map(str, expected))} axes{extra}, got shape {data.shape}")
    if with_channel and data.shape[-1] != channels:
        raise InputFileError(f"{path}: expected {channels} channel(s) on the last axis, got shape {data.shape}")
    if channels is not None and channels != 1 and not with_channel:
        raise InputFileError(f"{path}: expected {channels} channels on an extra last axis, got shape {data.shape}")
    if min(data.shape) == 0:
        raise InputFileError(f"{path}: image has an empty axis, shape {data.shape}")
    if not allow_nonfinite and not np.isfinite(data).all():
        bad = int(data.size - np.isfinite(data).sum())
        raise InputFileError(f"{path}: image contains {bad} NaN or infinite value(s)")
    return data, np.asarray(image.affine, dtype=np.float64)


class LoadNiftid(MapTransform):
    """Replace the NIfTI path under each key with a checked, channel-first ``(C, *axes)`` :class:`MetaTensor`.

    A bundle config uses it in place of ``LoadImaged`` + ``EnsureChannelFirstd`` to get :func:`read_nifti`'s checks,
    e.g. for a cine stack stored as ``(T, H, W)``::

        {"_target_": "medzoo.io_checks.LoadNiftid", "keys": ["image", "label"], "ndim": 3}

    gives ``(1, T, H, W)``; a 3D volume with 2 channels stored ``(H, W, D, 2)`` and ``"channels": 2`` gives
    ``(2, H, W, D)``. The meta dict holds ``filename_or_obj``, ``affine``, ``original_affine`` and ``spatial_shape``
    (as ``LoadImaged`` names them, for ``Invertd`` / ``SaveImaged`` and MONAI Label's restoring of a prediction).
    """

    def __init__(
        self,
        keys: KeysCollection,
        ndim: int | Sequence[int],
        channels: int | None = None,
        allow_nonfinite: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ndim, self.channels, self.allow_nonfinite = ndim, channels, allow_nonfinite

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            array, affine = read_nifti(path, self.ndim, self.channels, self.allow_nonfinite)
            array = np.moveaxis(array, -1, 0) if array.ndim not in _ndims(self.ndim) else array[None]
            meta = {
                "filename_or_obj": path,
                "affine": torch.as_tensor(affine),
                "original_affine": affine.copy(),
                "spatial_shape": np.asarray(array.shape[1:]),
            }
            d[key] = MetaTensor(torch.from_numpy(np.ascontiguousarray(array)), meta=meta)
        return d


class CheckedLoadImaged(LoadImaged):
    """MONAI's :class:`monai.transforms.LoadImaged` (same arguments) with the checks of :func:`read_nifti`, for
    inputs no zoo reader covers (e.g. the colour images of a bundle made by ``medzoo import-model``).

    Raises:
        InputFileError: the file is missing or empty, MONAI's reader fails on it (an unreadable or truncated file),
            or the image holds NaN or infinite values; the message starts with the file's path.
    """

    def __call__(self, data: Mapping[Hashable, object], reader=None) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(check_input_file(d[key]))
            try:
                loaded = super().__call__({key: path}, reader)
            except Exception as e:  # every reader failure on this file is a problem of the file
                cause = e.__cause__ or e  # MONAI wraps the reader's error
                raise InputFileError(f"{path}: not a readable image ({type(cause).__name__}: {cause})") from e
            image = loaded[key]
            if isinstance(image, torch.Tensor) and image.is_floating_point() and not torch.isfinite(image).all():
                bad = int((~torch.isfinite(image)).sum())
                raise InputFileError(f"{path}: image contains {bad} NaN or infinite value(s)")
            d.update(loaded)
        return d


def save_nifti(
    array: np.ndarray | torch.Tensor,
    affine: np.ndarray | None,
    path: str | os.PathLike,
    header: nib.Nifti1Header | None = None,
    compresslevel: int = 6,
) -> Path:
    """Write ``array`` (any number of axes; channels last, as NIfTI stores them) to ``path`` atomically.

    The image is serialised in memory and written to a temporary file beside ``path`` that is renamed over it: a
    reader never sees a partial file and a failure leaves an earlier ``path`` intact. ``.nii.gz`` is gzipped at
    ``compresslevel`` (zlib's default 6; 9 is much slower for little gain on masks).

    Args:
        array: the data, written with its own dtype.
        affine: 4x4 voxel-to-world matrix; None: identity.
        path: ``.nii`` or ``.nii.gz`` file.
        header: a header to start from (e.g. the source image's, to keep its description and units).
        compresslevel: zlib level of a ``.nii.gz``.
    """
    import nibabel as nib

    path = Path(path)
    if not path.name.endswith(NIFTI_EXTENSIONS):
        raise ValueError(f"{path}: a NIfTI file name ends in {' or '.join(NIFTI_EXTENSIONS)}")
    data = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    image = nib.Nifti1Image(data, np.eye(4) if affine is None else np.asarray(affine), header=header)
    image.set_data_dtype(data.dtype)
    content = image.to_bytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(
            gzip.compress(content, compresslevel=compresslevel, mtime=0) if path.suffix == ".gz" else content
        )
    return path
