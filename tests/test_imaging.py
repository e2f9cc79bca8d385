"""Decoding every supported format and mode, re-encoding to PNG, EXIF orientation, limits and errors."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps, PngImagePlugin

from models.imaging import ImageError, decode_image, encode_png

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (13, 21, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, (13, 21), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (13, 21), dtype=np.uint8)
GRAY16 = RNG.integers(0, 65536, (13, 21), dtype=np.uint16)


def file_bytes(image: Image.Image, fmt: str, **params: object) -> bytes:
    """``image`` saved in ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def round_trip(data: bytes) -> tuple[Image.Image, Image.Image]:
    """(the file as Pillow opens it, the PNG an identity network's output encodes to)."""
    decoded = decode_image(data)
    assert decoded.pixels.shape == (3, decoded.height, decoded.width)
    assert decoded.pixels.dtype == np.float32
    assert 0.0 <= decoded.pixels.min() and decoded.pixels.max() <= 1.0
    return Image.open(io.BytesIO(data)), Image.open(io.BytesIO(encode_png(decoded, decoded.pixels)))


def palette_image(transparent: bool) -> Image.Image:
    """A 13x21 palette image, optionally with a transparent palette entry."""
    image = Image.fromarray(RGB).quantize(colors=16)
    if transparent:
        image.info["transparency"] = 3
    return image


LOSSLESS_CASES = {
    "png-1": (lambda: Image.fromarray(GRAY > 127), "PNG", "L"),
    "png-L": (lambda: Image.fromarray(GRAY), "PNG", "L"),
    "png-LA": (lambda: Image.fromarray(np.stack([GRAY, ALPHA], -1)), "PNG", "LA"),
    "png-P": (lambda: palette_image(False), "PNG", "RGB"),
    "png-P-transparency": (lambda: palette_image(True), "PNG", "RGBA"),
    "png-RGB": (lambda: Image.fromarray(RGB), "PNG", "RGB"),
    "png-RGBA": (lambda: Image.fromarray(np.dstack([RGB, ALPHA])), "PNG", "RGBA"),
    "png-I;16": (lambda: Image.fromarray(GRAY16), "PNG", "I;16"),
    "webp-RGB": (lambda: Image.fromarray(RGB), "WEBP", "RGB"),
    "webp-RGBA": (lambda: Image.fromarray(np.dstack([RGB, ALPHA])), "WEBP", "RGBA"),
    "bmp-RGB": (lambda: Image.fromarray(RGB), "BMP", "RGB"),
    "bmp-1": (lambda: Image.fromarray(GRAY > 127), "BMP", "L"),
    "bmp-P": (lambda: palette_image(False), "BMP", "RGB"),
    "tiff-RGB": (lambda: Image.fromarray(RGB), "TIFF", "RGB"),
    "tiff-CMYK": (lambda: Image.fromarray(RGB).convert("CMYK"), "TIFF", "RGB"),
    "tiff-I;16": (lambda: Image.fromarray(GRAY16), "TIFF", "I;16"),
    "tiff-I;16B": (lambda: Image.fromarray(GRAY16.astype(">u2")), "TIFF", "I;16"),
    "tiff-I": (lambda: Image.fromarray(GRAY16.astype(np.int32)), "TIFF", "I;16"),
    "tiff-F": (lambda: Image.fromarray(GRAY16.astype(np.float32) / 65535), "TIFF", "I;16"),
    "gif-P": (lambda: palette_image(False), "GIF", "RGB"),
    "gif-P-transparency": (lambda: palette_image(True), "GIF", "RGBA"),
}


def expected_pixels(source: Image.Image, out_mode: str) -> np.ndarray:
    """What the output PNG must hold for a lossless input: the source converted to ``out_mode``."""
    if source.mode == "F":
        return np.rint(np.asarray(source) * 65535).astype(np.uint16)
    if out_mode == "I;16":
        return np.asarray(source).astype(np.uint16)
    if source.mode == "P" and out_mode == "RGBA":
        return np.asarray(source.convert("RGBA"))
    return np.asarray(source.convert(out_mode))


@pytest.mark.parametrize("case", sorted(LOSSLESS_CASES))
def test_lossless_formats_round_trip_exactly(case: str) -> None:
    make, fmt, out_mode = LOSSLESS_CASES[case]
    data = file_bytes(make(), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    source, output = round_trip(data)
    assert output.format == "PNG"
    assert output.size == source.size == (21, 13)
    assert output.mode == out_mode
    np.testing.assert_array_equal(np.asarray(output), expected_pixels(source, out_mode))


@pytest.mark.parametrize("mode, out_mode", [("RGB", "RGB"), ("L", "L"), ("CMYK", "RGB")])
def test_jpeg_round_trips_its_decoded_pixels(mode: str, out_mode: str) -> None:
    image = Image.fromarray(RGB).convert(mode)
    source, output = round_trip(file_bytes(image, "JPEG", quality=90))
    assert output.size == source.size and output.mode == out_mode
    np.testing.assert_array_equal(np.asarray(output), np.asarray(source.convert(out_mode)))


def test_decoded_image_describes_what_to_re_encode() -> None:
    gray16 = decode_image(file_bytes(Image.fromarray(GRAY16), "PNG"))
    assert gray16.gray and gray16.sixteen_bit and gray16.alpha is None
    assert (gray16.width, gray16.height, gray16.source_format, gray16.source_mode) == (21, 13, "PNG", "I;16")
    np.testing.assert_array_equal(gray16.pixels[0], gray16.pixels[2])
    rgba = decode_image(file_bytes(Image.fromarray(np.dstack([RGB, ALPHA])), "PNG"))
    assert not rgba.gray and not rgba.sixteen_bit
    np.testing.assert_array_equal(rgba.alpha, ALPHA)


def test_alpha_passes_through_a_changed_image_unchanged() -> None:
    decoded = decode_image(file_bytes(Image.fromarray(np.dstack([RGB, ALPHA])), "PNG"))
    output = np.asarray(Image.open(io.BytesIO(encode_png(decoded, 1.0 - decoded.pixels))))
    np.testing.assert_array_equal(output[..., 3], ALPHA)
    np.testing.assert_array_equal(output[..., :3], 255 - RGB)


def test_icc_profile_is_kept_for_rgb_and_dropped_for_cmyk() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = decode_image(file_bytes(Image.fromarray(RGB), "PNG", icc_profile=srgb))
    assert Image.open(io.BytesIO(encode_png(rgb, rgb.pixels))).info["icc_profile"] == srgb
    cmyk = decode_image(file_bytes(Image.fromarray(RGB).convert("CMYK"), "JPEG", icc_profile=srgb))
    assert cmyk.icc_profile is None
    assert "icc_profile" not in Image.open(io.BytesIO(encode_png(cmyk, cmyk.pixels))).info


def test_gray_output_is_the_channel_mean_and_rounds_after_clamping() -> None:
    decoded = decode_image(file_bytes(Image.fromarray(np.zeros((1, 4), np.uint8)), "PNG"))
    output = np.array([[[0.1, 0.5, -1.0, 2.0]], [[0.2, 0.5, -1.0, 2.0]], [[0.3, 0.5, -1.0, 2.0]]], np.float32)
    png = np.asarray(Image.open(io.BytesIO(encode_png(decoded, output))))
    np.testing.assert_array_equal(png, [[51, 128, 0, 255]])
    decoded16 = decode_image(file_bytes(Image.fromarray(np.zeros((1, 4), np.uint16)), "PNG"))
    png16 = np.asarray(Image.open(io.BytesIO(encode_png(decoded16, output))))
    np.testing.assert_array_equal(png16, [[13107, 32768, 0, 65535]])


def test_animated_gif_uses_its_first_frame() -> None:
    frames = [Image.new("L", (8, 8), value) for value in (40, 200)]
    data = file_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    decoded = decode_image(data)
    np.testing.assert_allclose(decoded.pixels, 40 / 255, atol=1e-6)


@pytest.mark.parametrize("orientation, rotate", [(1, lambda a: a), (3, lambda a: np.rot90(a, 2)),
                                                 (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1))])
def test_exif_orientation_is_applied(orientation: int, rotate) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = decode_image(file_bytes(Image.fromarray(RGB), "PNG", exif=exif.tobytes()))
    expected = rotate(RGB)
    assert (decoded.height, decoded.width) == expected.shape[:2]
    np.testing.assert_array_equal(np.rint(decoded.pixels.transpose(1, 2, 0) * 255).astype(np.uint8), expected)


def test_corrupt_exif_falls_back_to_no_rotation() -> None:
    data = file_bytes(Image.fromarray(RGB), "PNG", exif=b"XX\x00*\x00\x00\x00\x08")
    opened = Image.open(io.BytesIO(data))
    opened.load()
    with pytest.raises(SyntaxError):
        ImageOps.exif_transpose(opened)
    decoded = decode_image(data)
    assert (decoded.height, decoded.width) == (13, 21)
    odd_orientation = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x63" + bytes(6)
    decoded = decode_image(file_bytes(Image.fromarray(RGB), "JPEG", exif=odd_orientation))
    assert (decoded.height, decoded.width) == (13, 21)


def png_header_only(width: int, height: int) -> bytes:
    """A ~60-byte PNG declaring ``width`` x ``height`` RGB pixels with a tiny compressed stream."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height, size", [(8000, 6000, "8000x6000 = 48.0 MP"), (50000, 50000, "2500.0 MP")])
def test_size_limit_refuses_a_tiny_file_declaring_huge_dimensions_before_decoding(
    monkeypatch, width: int, height: int, size: str
) -> None:
    def no_decoding(self):
        raise AssertionError("pixel data must not be decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    data = png_header_only(width, height)
    assert len(data) < 100
    with pytest.raises(ImageError) as refused:
        decode_image(data)
    assert refused.value.status == 413
    assert f"image is {size}; the limit is 40.0 MP" in refused.value.message


def test_size_limit_is_configurable_and_pillow_bomb_error_maps_to_413() -> None:
    small = file_bytes(Image.fromarray(RGB), "PNG")
    assert decode_image(small, max_pixels=13 * 21).width == 21
    with pytest.raises(ImageError) as refused:
        decode_image(small, max_pixels=13 * 21 - 1)
    assert refused.value.status == 413 and "21x13 = 0.00027 MP; the limit is 0.00027 MP" in refused.value.message
    with pytest.raises(ImageError) as bomb:
        decode_image(png_header_only(50000, 50000), max_pixels=10**12)
    assert bomb.value.status == 413


def lab_tiff() -> bytes:
    """A TIFF in CIE L*a*b*, a mode Pillow cannot convert to RGB."""
    return file_bytes(Image.new("LAB", (4, 4)), "TIFF")


@pytest.mark.parametrize("data, status", [
    (b"", 400),
    (b"this is not an image", 415),
    (file_bytes(Image.fromarray(RGB), "PNG")[:120], 400),
    (file_bytes(Image.fromarray(RGB), "JPEG")[:300], 400),
    (lab_tiff(), 415),
    (file_bytes(Image.fromarray(np.full((2, 2), 70000, np.int32)), "TIFF"), 415),
    (file_bytes(Image.fromarray(np.full((2, 2), 1.5, np.float32)), "TIFF"), 415),
], ids=["empty", "not-image", "truncated-png", "truncated-jpeg", "lab-mode", "int32-range", "float-range"])
def test_errors_carry_the_right_status_and_a_message(data: bytes, status: int) -> None:
    with pytest.raises(ImageError) as error:
        decode_image(data)
    assert error.value.status == status
    assert isinstance(error.value, ValueError) and len(error.value.message) > 20


def test_encode_refuses_an_output_of_another_shape() -> None:
    decoded = decode_image(file_bytes(Image.fromarray(RGB), "PNG"))
    with pytest.raises(ValueError):
        encode_png(decoded, np.zeros((3, 4, 4), np.float32))


def test_a_mostly_black_frame_encodes_small_and_exactly() -> None:
    # A star field: the PNG strategy must still find the runs (Huffman-only coding gives about 90x the size).
    sky = np.zeros((500, 500, 3), np.uint8)
    stars = RNG.integers(0, 500, (100, 2))
    sky[stars[:, 0], stars[:, 1]] = 255
    decoded = decode_image(file_bytes(Image.fromarray(sky), "PNG"))
    png = encode_png(decoded, decoded.pixels)
    assert len(png) < 5_000
    with Image.open(io.BytesIO(png)) as result:
        assert np.array_equal(np.asarray(result), sky)
