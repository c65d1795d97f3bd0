"""Decoding of grayscale PNGs, the format of chest X-ray datasets, with ISA-L inflation.

A PNG's pixels are a zlib stream (the concatenated ``IDAT`` chunks) of rows, each row prefixed by a filter type that
predicts it from the pixel to its left and the row above. Pillow inflates that stream with zlib, which is most of
the time it takes to read a 1024x1024 radiograph; :func:`decode_gray_png` inflates it with Intel's ISA-L
(``isal.isal_zlib``) and undoes the filters in a small compiled loop (``numba``), giving the same pixels as Pillow
in under a third of the time (``benchmarks/cxr_reading.py``, ``docs/cxr_reading.md``). The loop is compiled
on first use and cached beside this module, or in the user's cache folder if that is read-only (``NUMBA_CACHE_DIR``
chooses another).

It handles what radiographs are stored as: non-interlaced 8- and 16-bit grayscale. For any other PNG (colour,
palette, alpha, 1-4 bit, interlaced) it returns ``None`` and the caller reads the file with Pillow, which gives the
same pixels for every kind; the split is by file kind only and is never taken after an error.

Like libpng, it checks the CRC of the critical chunks (``IHDR``, ``IDAT``) and ignores ancillary chunks (gamma,
text, transparency, ...), which do not change the stored pixel values.
"""

from __future__ import annotations

import struct

import numba
import numpy as np
from isal import isal_zlib

__all__ = ["PNGDecodeError", "decode_gray_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GRAY = 0  # IHDR colour type of grayscale without alpha
_FILTER_NAMES = ("None", "Sub", "Up", "Average", "Paeth")


class PNGDecodeError(ValueError):
    """A PNG that cannot be decoded; the message says what is wrong (the caller adds the file name)."""


def _chunks(data: bytes):
    """Yield ``(type, payload, crc_ok)`` per chunk after the signature, up to and including ``IEND``."""
    position = len(PNG_SIGNATURE)
    while True:
        if position + 8 > len(data):
            raise PNGDecodeError("file is truncated (no IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 8 + length
        if end + 4 > len(data):
            raise PNGDecodeError(f"file is truncated inside a {kind.decode('latin-1')!r} chunk")
        (crc,) = struct.unpack_from(">I", data, end)
        payload = data[position + 8 : end]
        yield kind, payload, isal_zlib.crc32(payload, isal_zlib.crc32(kind)) == crc
        if kind == b"IEND":
            return
        position = end + 4


@numba.njit(cache=True, nogil=True)
def _unfilter(filtered: np.ndarray, height: int, stride: int, bpp: int) -> tuple[np.ndarray, int]:
    """Undo PNG row filters.

    Args:
        filtered: (height * (stride + 1),) uint8, each row a filter-type byte then ``stride`` filtered bytes.
        height: rows.
        stride: bytes per row without the filter byte.
        bpp: bytes per pixel (1 for 8-bit, 2 for 16-bit grayscale), the distance to the left neighbour.

    Returns:
        (height, stride) uint8 rows, and -1, or the index of the first row with an unknown filter type.
    """
    out = np.zeros((height + 1, stride), np.uint8)  # row 0: the zero row "above" the image
    for r in range(height):
        start = r * (stride + 1) + 1
        kind = filtered[start - 1]
        line, up, row = filtered[start : start + stride], out[r], out[r + 1]
        if kind == 0:  # None
            row[:] = line
        elif kind == 2:  # Up: add the byte above
            for i in range(stride):
                row[i] = line[i] + up[i]
        elif kind > 4:
            return out[1:], r
        elif bpp == 1:  # 8-bit gray: the left neighbour is the byte just written, carried in a register
            left = np.uint8(0)
            if kind == 1:  # Sub: add the byte to the left
                for i in range(stride):
                    left = np.uint8(line[i] + left)
                    row[i] = left
            elif kind == 3:  # Average of left and above, rounded down
                for i in range(stride):
                    left = np.uint8(line[i] + ((np.int32(left) + up[i]) >> 1))
                    row[i] = left
            else:  # Paeth
                up_left = np.int32(0)
                for i in range(stride):
                    left = np.uint8(line[i] + _paeth(np.int32(left), np.int32(up[i]), up_left))
                    up_left = np.int32(up[i])
                    row[i] = left
        else:  # wider pixels: the left neighbour is bpp bytes back
            for i in range(stride):
                a = np.int32(row[i - bpp]) if i >= bpp else 0
                if kind == 1:
                    row[i] = line[i] + a
                elif kind == 3:
                    row[i] = line[i] + ((a + up[i]) >> 1)
                else:
                    row[i] = line[i] + _paeth(a, np.int32(up[i]), np.int32(up[i - bpp]) if i >= bpp else 0)
    return out[1:], -1


@numba.njit(cache=True, nogil=True, inline="always")
def _paeth(a: int, b: int, c: int) -> int:
    """PNG's Paeth predictor: whichever of left ``a``, above ``b``, upper-left ``c`` is nearest to ``a + b - c``."""
    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def decode_gray_png(data: bytes, max_pixels: int | None = None) -> np.ndarray | None:
    """Pixels of a non-interlaced 8- or 16-bit grayscale PNG, or ``None`` for any other kind of file.

    Args:
        data: the file's bytes.
        max_pixels: refuse images with more pixels than this (a decompression-bomb guard), before inflating.

    Returns:
        (H, W) uint8 for 8-bit, (H, W) uint16 (native byte order) for 16-bit images; ``None`` if ``data`` is not a
        PNG or is a PNG of another kind (colour, palette, 1-4 bit, interlaced).

    Raises:
        PNGDecodeError: a grayscale PNG that is truncated, fails a CRC or zlib check, has too little image data, an
            unknown filter type or an unknown critical chunk, or is larger than ``max_pixels``.
    """
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        return None
    width, height, depth, colour, compression, filter_method, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if colour != _GRAY or depth not in (8, 16) or interlace != 0:
        return None
    chunks = _chunks(data)
    _, _, header_crc_ok = next(chunks)  # the IHDR chunk
    if not header_crc_ok:
        raise PNGDecodeError("IHDR chunk fails its CRC check")
    if width == 0 or height == 0 or compression != 0 or filter_method != 0:
        raise PNGDecodeError(
            f"invalid IHDR: {width}x{height}, compression {compression}, filter method {filter_method}"
        )
    if max_pixels is not None and width * height > max_pixels:
        raise PNGDecodeError(f"image too large to decode safely ({width}x{height} pixels, limit {max_pixels})")
    compressed = []
    for kind, payload, crc_ok in chunks:
        if kind == b"IDAT":
            if not crc_ok:
                raise PNGDecodeError("IDAT chunk fails its CRC check")
            compressed.append(payload)
        elif kind[0] & 0x20 == 0 and kind != b"IEND":  # an uppercase first letter marks a critical chunk
            raise PNGDecodeError(f"unknown critical chunk {kind.decode('latin-1')!r} in a grayscale PNG")
    bpp = depth // 8
    stride = width * bpp
    expected = height * (stride + 1)
    inflater = isal_zlib.decompressobj()
    try:  # at most the image's bytes, whatever the stream claims (data after the last row is ignored, as by libpng)
        filtered = inflater.decompress(b"".join(compressed), expected)
    except isal_zlib.error as e:
        raise PNGDecodeError(f"corrupt image data ({e})") from None
    if len(filtered) < expected:
        raise PNGDecodeError(f"image data is truncated ({len(filtered)} of {expected} bytes)")
    rows, bad_row = _unfilter(np.frombuffer(filtered, np.uint8), height, stride, bpp)
    if bad_row >= 0:
        bad_kind = filtered[bad_row * (stride + 1)]
        raise PNGDecodeError(f"row {bad_row} has filter type {bad_kind}, not one of 0-4 {_FILTER_NAMES}")
    return rows if bpp == 1 else rows.view(">u2").astype(np.uint16)
