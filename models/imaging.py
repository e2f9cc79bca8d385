"""Decode uploaded image bytes for the networks and encode their output back to PNG.

Plain Pillow/NumPy functions with no serving framework in sight. ``decode_image`` turns any
common image file into its samples (network input is made from them a tile at a time, floats in
[0, 1]) plus what ``OutputImage`` needs to give the client back an image of the same size and kind:

* grayscale in (modes 1, L, LA, I;16*, I, F) -> grayscale PNG out (mean of the 3 output channels);
* 16-bit grayscale in (I;16, I;16B, I;16L, I with values in 0..65535, F in [0, 1]) -> 16-bit PNG out;
* colour in (RGB, RGBA, P/PA palettes, CMYK, YCbCr, ...) -> 8-bit RGB PNG out;
* an alpha channel (LA, RGBA, PA, palettes with transparency) is carried through unchanged;
* an embedded ICC colour profile is copied to the PNG (not for CMYK/YCbCr sources, whose
  profile would no longer describe the converted RGB pixels); other metadata is dropped.

Multi-frame files (animated GIF/WebP/PNG, multi-page TIFF) are denoised from their first frame
only. EXIF orientation is applied (a corrupt EXIF block is ignored). Every failure is an
``ImageError`` carrying the HTTP status a server should answer with.
"""
from __future__ import annotations

import io
import re
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000
# Longest side accepted. Tiling pads every side to at least one 128-pixel tile, so without it a
# 1 x 40,000,000 strip (within MAX_PIXELS, about 120 kB as PNG) would need 416,667 tiles
# and a 58 GiB padded tensor; with it the worst shape costs about as much as a square image.
MAX_SIDE = 32_768
EIGHT_BIT = 255
SIXTEEN_BIT = 65535
GRAY_MODES = frozenset({"1", "L", "LA"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
COLOUR_MODES = frozenset({"RGB", "RGBX", "CMYK", "YCbCr", "HSV"})
# Modes whose colour profile (if any) still describes the pixels after conversion to RGB/gray.
PROFILE_KEEPING_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa"}) | SIXTEEN_BIT_MODES
ALPHA_COLOUR_MODES = frozenset({"RGBA", "RGBa", "PA"})
# zlib level 1 with run-length matching only: faster and smaller than level 1's default strategy on
# a denoised photo, and still small on a mostly black frame, where Huffman-only coding is not
# (``python -m scripts.evaluation.benchmark --section png``; docs/performance.md). Decoders see an ordinary PNG.
PNG_LEVEL = 1
PNG_STRATEGY = zlib.Z_RLE


class ImageError(ValueError):
    """A request whose image cannot be processed; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class DecodedImage:
    """The decoded samples as the file holds them, plus what is needed to re-encode the result.

    ``values`` is HxW (grayscale) or HxWx3 (colour) in the file's own sample type, ``scale`` its
    full-scale value; the network's float input is made a tile at a time (``tile``), so a large
    image is never held as floats whole.
    """

    values: np.ndarray
    scale: int
    gray: bool
    sixteen_bit: bool
    alpha: np.ndarray | None
    source_format: str
    source_mode: str
    icc_profile: bytes | None = None

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.values.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.values.shape[0])

    @property
    def megapixels(self) -> float:
        """Pixel count in millions."""
        return self.width * self.height / 1e6

    def tile(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Network input at the given source rows and columns: 3 x len(rows) x len(cols) float32 in [0, 1]."""
        block = self.values[np.ix_(rows, cols)]
        pixels = np.empty((3, len(rows), len(cols)), dtype=np.float32)
        pixels[...] = block[None] if self.gray else block.transpose(2, 0, 1)
        pixels /= self.scale
        return pixels

    @property
    def pixels(self) -> np.ndarray:
        """The whole image as network input, 3xHxW float32 in [0, 1] (for tools and tests; serving uses ``tile``)."""
        return self.tile(np.arange(self.height), np.arange(self.width))


def format_megapixels(pixels: int) -> str:
    """A pixel count in MP: one decimal from 1 MP up, two significant digits below."""
    value = pixels / 1e6
    return f"{value:.1f} MP" if value >= 1 else f"{value:.2g} MP"


def too_large(size: str, max_pixels: int) -> ImageError:
    """The 413 error for an image of ``size`` (e.g. "50000x50000 = 2500.0 MP") over the limit."""
    return ImageError(413, f"image is {size}; the limit is {format_megapixels(max_pixels)}: downscale or crop it and try again")


def check_size(width: int, height: int, max_pixels: int) -> None:
    """Refuse (413) an image whose declared size exceeds ``max_pixels`` or whose longest side exceeds ``MAX_SIDE``."""
    if width * height > max_pixels:
        raise too_large(f"{width}x{height} = {format_megapixels(width * height)}", max_pixels)
    if max(width, height) > MAX_SIDE:
        raise ImageError(
            413, f"image is {width}x{height}; the longest side allowed is {MAX_SIDE} pixels: downscale or crop it and try again"
        )


def bomb_error(error: Image.DecompressionBombError, max_pixels: int) -> ImageError:
    """Pillow's own decompression-bomb refusal as the same 413 error (its message gives the pixel count)."""
    pixels = re.search(r"\((\d+) pixels\)", str(error))
    return too_large(format_megapixels(int(pixels.group(1))) if pixels else "too large to decode", max_pixels)


def open_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read the header, check the declared size against the limit, then decode the first frame."""
    if not data:
        raise ImageError(400, "empty request body: send the image file's bytes as the request body")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(
            415, "the body is not an image Pillow recognises: send a JPEG, PNG, WebP, BMP, TIFF or GIF file"
        ) from None
    except Image.DecompressionBombError as error:
        raise bomb_error(error, max_pixels) from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types on corrupt headers
        raise ImageError(400, f"the image header is corrupt ({error}): re-save the file and try again") from None
    width, height = image.size
    check_size(width, height, max_pixels)
    try:
        image.load()
    except Image.DecompressionBombError as error:
        raise bomb_error(error, max_pixels) from None
    except Exception as error:  # noqa: BLE001 - truncated or corrupt pixel data
        raise ImageError(
            400, f"the {image.format or 'image'} file is truncated or corrupt ({error}): re-save it and try again"
        ) from None
    return image


def apply_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF orientation tag says; a corrupt EXIF block means no rotation."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - Pillow raises many types on malformed EXIF
        return image


def sixteen_bit_gray(image: Image.Image) -> tuple[np.ndarray, int]:
    """(HxW values, their full-scale value) of a 16-bit, 32-bit integer or float grayscale image."""
    values = np.asarray(image)
    if image.mode == "F":
        if values.size and (not np.isfinite(values).all() or values.min() < 0 or values.max() > 1):
            raise ImageError(415, "floating-point images must hold values in [0, 1]: convert it to 8 or 16 bit")
        return values, 1
    if values.size and (values.min() < 0 or values.max() > SIXTEEN_BIT):
        raise ImageError(415, "32-bit integer images must hold values in 0..65535: convert it to 16 bit")
    return values, SIXTEEN_BIT


def split_modes(image: Image.Image) -> tuple[np.ndarray, int, bool, bool, np.ndarray | None]:
    """(HxW or HxWx3 values, full scale, gray?, 16 bit?, alpha or None) for any supported mode."""
    mode = image.mode
    if mode == "P":
        mode = "PA" if "transparency" in image.info else "RGB"
        image = image.convert("RGBA" if mode == "PA" else "RGB")
    if mode in SIXTEEN_BIT_MODES:
        values, scale = sixteen_bit_gray(image)
        return values, scale, True, True, None
    if mode in GRAY_MODES:
        la = np.asarray(image.convert("LA"))
        alpha = la[..., 1].copy() if mode == "LA" else None
        return la[..., 0], EIGHT_BIT, True, False, alpha
    if mode in ALPHA_COLOUR_MODES:
        rgba = np.asarray(image.convert("RGBA"))
        return rgba[..., :3], EIGHT_BIT, False, False, rgba[..., 3].copy()
    if mode in COLOUR_MODES:
        return np.asarray(image.convert("RGB")), EIGHT_BIT, False, False, None
    raise ImageError(415, f"unsupported image mode {mode}: save the image as 8-bit RGB, RGBA or grayscale")


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode image file bytes into network input and re-encoding information."""
    image = open_image(data, max_pixels)
    source_format, source_mode = image.format or "unknown", image.mode
    icc_profile = image.info.get("icc_profile") if source_mode in PROFILE_KEEPING_MODES else None
    values, scale, gray, sixteen_bit, alpha = split_modes(apply_orientation(image))
    return DecodedImage(
        values=values,
        scale=scale,
        gray=gray,
        sixteen_bit=sixteen_bit,
        alpha=alpha,
        source_format=source_format,
        source_mode=source_mode,
        icc_profile=icc_profile or None,
    )


def quantise(values: np.ndarray, peak: int) -> np.ndarray:
    """``round(clamp(x, 0, 1) * peak)`` as an integer array fitting ``peak`` (one float temporary)."""
    scaled = np.clip(values, 0.0, 1.0, dtype=np.float32)
    scaled *= peak
    np.rint(scaled, out=scaled)
    return scaled.astype(np.uint16 if peak > EIGHT_BIT else np.uint8)


class OutputImage:
    """The answer's pixels in the kind of the decoded input, filled band by band, then encoded as PNG.

    Only the final integer pixels (and the input's alpha, copied in once) are held whole; each
    band of float rows is quantised as it arrives (``write_rows``).
    """

    def __init__(self, decoded: DecodedImage) -> None:
        self.decoded = decoded
        self.peak = SIXTEEN_BIT if decoded.sixteen_bit else EIGHT_BIT
        colours = 1 if decoded.gray else 3
        channels = colours + (decoded.alpha is not None)
        self.array = np.empty((decoded.height, decoded.width, channels), dtype=np.uint16 if decoded.sixteen_bit else np.uint8)
        if decoded.alpha is not None:
            self.array[..., colours] = decoded.alpha

    def write_rows(self, first: int, rows: np.ndarray) -> None:
        """Quantise a 3 x h x W float band (0-1 scale) into rows ``first .. first + h`` (grayscale: the channel mean)."""
        rows = np.asarray(rows, dtype=np.float32)
        end = first + rows.shape[1]
        if rows.shape[0] != 3 or rows.shape[2] != self.decoded.width or not 0 <= first < end <= self.decoded.height:
            raise ValueError(f"rows {first}..{end} of shape {rows.shape} do not fit a "
                             f"{self.decoded.width}x{self.decoded.height} output")
        if self.decoded.gray:
            self.array[first:end, :, 0] = quantise(rows.mean(axis=0), self.peak)
        else:
            self.array[first:end, :, :3] = quantise(rows.transpose(1, 2, 0), self.peak)

    def png(self, level: int = PNG_LEVEL, strategy: int = PNG_STRATEGY) -> bytes:
        """PNG bytes of the pixels written so far; ``level`` and ``strategy`` are zlib's (the served ones by default)."""
        pixels = self.array[..., 0] if self.array.shape[2] == 1 else self.array
        buffer = io.BytesIO()
        profile = {"icc_profile": self.decoded.icc_profile} if self.decoded.icc_profile else {}
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=level, compress_type=strategy, **profile)
        return buffer.getvalue()


def encode_png(decoded: DecodedImage, output: np.ndarray, level: int = PNG_LEVEL, strategy: int = PNG_STRATEGY) -> bytes:
    """PNG bytes of a whole 3xHxW float ``output`` in the kind and size of the decoded input (``OutputImage``)."""
    if output.shape != (3, decoded.height, decoded.width):
        raise ValueError(f"output shape {output.shape} differs from the input's {(3, decoded.height, decoded.width)}")
    answer = OutputImage(decoded)
    answer.write_rows(0, output)
    return answer.png(level, strategy)
