"""Fast chest X-ray reading: the grayscale PNG decoder (medzoo.cxr.png: Pillow's pixels for every filter type, other
kinds left to Pillow, clear errors for broken files) and the box resize (medzoo.cxr.resize: Pillow's BOX weights)."""

import io
import itertools
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from medzoo.cxr.png import PNGDecodeError, decode_gray_png
from medzoo.cxr.resize import box_resize
from medzoo.cxr.synthetic import generate_nih_sample
from medzoo.cxr.transforms import ImageReadError, read_xray

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(
    filtered: bytes,
    width: int,
    height: int,
    depth: int = 8,
    interlace: int = 0,
    idat_pieces: int = 1,
    stream: bytes | None = None,
    extra: bytes = b"",
) -> bytes:
    """A grayscale PNG whose IDAT stream inflates to ``filtered`` (rows of a filter byte and filtered pixels)."""
    stream = zlib.compress(filtered) if stream is None else stream
    cuts = np.linspace(0, len(stream), idat_pieces + 1).astype(int)
    idats = b"".join(_chunk(b"IDAT", stream[a:b]) for a, b in itertools.pairwise(cuts))
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, interlace))
    return SIGNATURE + header + extra + idats + _chunk(b"IEND", b"")


def _random_filtered(rng, width: int, height: int, depth: int, filters=range(5)) -> bytes:
    """Random filtered rows, each with a filter type drawn from ``filters``: any such bytes are a valid image."""
    rows = rng.integers(0, 256, (height, 1 + width * depth // 8), dtype=np.uint8)
    rows[:, 0] = rng.choice(list(filters), height)
    return rows.tobytes()


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("only", [None, 0, 1, 2, 3, 4])
def test_same_pixels_as_pillow_for_every_filter_type(depth, only):
    rng = np.random.default_rng(depth + (only or 0))
    width, height = 37, 23
    filters = range(5) if only is None else [only]
    data = _png(
        _random_filtered(rng, width, height, depth, filters),
        width,
        height,
        depth,
        idat_pieces=3,
        extra=_chunk(b"tEXt", b"Comment\x00ancillary chunks are skipped"),
    )
    pixels = decode_gray_png(data)
    expected = np.array(Image.open(io.BytesIO(data)))
    assert pixels.dtype == (np.uint8 if depth == 8 else np.uint16) and pixels.shape == (height, width)
    assert np.array_equal(pixels, expected)


def test_read_xray_gives_what_pillow_alone_gave(tmp_path):
    """The stored pixels, then the box resize on them, agree with Pillow decoding, converting and resizing (to float32
    rounding), for 8- and 16-bit PNGs, shrinking and enlarging."""
    root = generate_nih_sample(tmp_path, num_patients=2, images_per_patient=2, image_size=128)
    sixteen = tmp_path / "sixteen.png"
    Image.fromarray(np.array(Image.open(next((root / "images").glob("*.png")))).astype(np.uint16) * 257).save(sixteen)
    for path in [*sorted((root / "images").glob("*.png")), sixteen]:
        pillow = Image.open(path)
        gray = pillow.convert("F") if pillow.mode == "L" else pillow.convert("F").point(lambda v: v * 255.0 / 65535.0)
        assert np.allclose(read_xray(path), np.array(gray), rtol=0, atol=1e-4)
        for size in [(48, 40), (224, 200), (128, 3)]:
            expected = np.array(gray.resize(size[::-1], Image.Resampling.BOX))
            assert np.allclose(read_xray(path, size), expected, rtol=0, atol=1e-4), size


def test_other_kinds_are_left_to_pillow():
    gray = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16)

    def saved(image: Image.Image, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, **options)
        return buffer.getvalue()

    others = {
        "rgb": saved(Image.fromarray(np.stack([gray] * 3, -1)), format="PNG"),
        "gray+alpha": saved(Image.fromarray(np.stack([gray] * 2, -1), "LA"), format="PNG"),
        "palette": saved(Image.fromarray(gray).convert("P"), format="PNG"),
        "1-bit": saved(Image.fromarray(gray > 100), format="PNG"),
        "interlaced": _png(b"", 16, 16, interlace=1),
        "jpeg": saved(Image.fromarray(gray), format="JPEG"),
        "text": b"not an image at all",
    }
    for kind, data in others.items():
        assert decode_gray_png(data) is None, kind


def _broken_cases() -> dict[str, tuple[bytes, str]]:
    width, height = 8, 4
    filtered = _random_filtered(np.random.default_rng(0), width, height, 8)
    good = _png(filtered, width, height)
    idat = good.index(b"IDAT")
    bad_filter = bytearray(filtered)
    bad_filter[2 * (width + 1)] = 7
    return {
        "IHDR CRC": (good[:29] + bytes([good[29] ^ 1]) + good[30:], "IHDR chunk fails its CRC check"),
        "IDAT CRC": (
            good[: idat + 4] + bytes([good[idat + 4] ^ 1]) + good[idat + 5 :],
            "IDAT chunk fails its CRC check",
        ),
        "no IEND": (good[:-12], r"file is truncated \(no IEND chunk\)"),
        "cut in IDAT": (good[: idat + 10], "file is truncated inside a 'IDAT' chunk"),
        "short data": (_png(filtered[: -(width + 1)], width, height), r"image data is truncated \(27 of 36 bytes\)"),
        "not zlib": (_png(b"", width, height, stream=b"\x00" * 20), "corrupt image data"),
        "filter type": (_png(bytes(bad_filter), width, height), r"row 2 has filter type 7, not one of 0-4"),
        "critical chunk": (_png(filtered, width, height, extra=_chunk(b"ABCD", b"")), "unknown critical chunk 'ABCD'"),
        "zero width": (_png(b"", 0, height), "invalid IHDR: 0x4"),
    }


@pytest.mark.parametrize("case", sorted(_broken_cases()))
def test_broken_files_say_what_is_wrong(case):
    data, message = _broken_cases()[case]
    with pytest.raises(PNGDecodeError, match=message):
        decode_gray_png(data)


def test_errors_name_the_file_and_the_pixel_limit_is_checked_before_inflating(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(_broken_cases()["filter type"][0])
    with pytest.raises(ImageReadError, match="bad.png: row 2 has filter type 7"):
        read_xray(path)
    bomb = _png(b"", 1000, 1000, stream=b"this stream is never inflated")
    with pytest.raises(PNGDecodeError, match=r"image too large to decode safely \(1000x1000 pixels, limit 999999\)"):
        decode_gray_png(bomb, max_pixels=999_999)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32])
def test_box_resize_has_pillows_box_weights(dtype):
    rng = np.random.default_rng(1)
    for shape, size in [
        ((64, 96), (16, 24)),
        ((64, 96), (30, 7)),
        ((1024, 1024), (224, 224)),
        ((100, 37), (224, 224)),
        ((50, 50), (51, 49)),
        ((13, 300), (7, 299)),
        ((9, 9), (9, 9)),
    ]:
        image = rng.integers(0, 256, shape).astype(dtype)
        expected = np.array(Image.fromarray(image.astype(np.float32)).resize(size[::-1], Image.Resampling.BOX))
        resized = box_resize(image, size)
        assert resized.dtype == np.float32 and resized.shape == size
        assert np.allclose(resized, expected, rtol=0, atol=1e-4), (shape, size)
    assert np.array_equal(box_resize(np.arange(16, dtype=np.uint8).reshape(4, 4), (2, 2)), [[2.5, 4.5], [10.5, 12.5]])
    with pytest.raises(ValueError, match="expected a 2D image"):
        box_resize(np.zeros((2, 8, 8), dtype), (4, 4))
    with pytest.raises(ValueError, match="size must be two positive sizes"):
        box_resize(np.zeros((8, 8), dtype), (0, 4))
