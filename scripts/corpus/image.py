"""Turn one original file of a corpus source into the stored photograph.

The steps (docs/training.md, "Data"): decode with Pillow (or, for the two scipy
arrays, from their raw form), apply the EXIF orientation, convert to 8-bit RGB (grey is
copied into all three channels), shrink with Lanczos so the long side is at most
``long_side`` pixels (never enlarged; new size ``round(w*s), round(h*s)``), save as PNG.
"""
from __future__ import annotations

import bz2
import io
import os
import pickletools
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Opcodes of a pickled list of lists of small ints (scipy's ascent.dat); read, never executed.
INT_LIST_OPCODES = {"PROTO", "EMPTY_LIST", "MARK", "APPENDS", "APPEND", "BINPUT", "LONG_BINPUT", "MEMOIZE", "STOP"}
INT_OPCODES = {"BININT1", "BININT2", "BININT"}


def decode_image_file(data: bytes, shape: list[int] | None = None) -> Image.Image:
    """An image file (JPEG, PNG, WebP...) decoded by Pillow; ``shape`` is not used."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def decode_raw_bz2(data: bytes, shape: list[int] | None = None) -> Image.Image:
    """bz2-compressed raw uint8 pixels of the given ``shape`` (scipy's ``face.dat``)."""
    if shape is None:
        raise ValueError("raw pixels need a shape")
    return Image.fromarray(np.frombuffer(bz2.decompress(data), dtype=np.uint8).reshape(shape))


def decode_int_rows(data: bytes, shape: list[int] | None = None) -> Image.Image:
    """A pickled list of rows of ints 0-255 (scipy's ``ascent.dat``), read opcode by opcode, never unpickled."""
    if shape is None:
        raise ValueError("pixel rows need a shape")
    values = []
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name in INT_OPCODES:
            values.append(argument)
        elif opcode.name not in INT_LIST_OPCODES:
            raise ValueError(f"unexpected pickle opcode {opcode.name}: not a list of integer rows")
    pixels = np.asarray(values, dtype=np.int64)
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise ValueError("pixel values outside 0-255")
    return Image.fromarray(pixels.astype(np.uint8).reshape(shape))


DECODERS = {"image": decode_image_file, "raw-bz2": decode_raw_bz2, "int-rows": decode_int_rows}


def fitted_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(width, height) scaled so the long side is at most ``long_side``; never enlarged."""
    width, height = size
    scale = long_side / max(width, height)
    if scale >= 1:
        return width, height
    return round(width * scale), round(height * scale)


def corpus_photo(data: bytes, long_side: int, decode: str = "image", shape: list[int] | None = None) -> Image.Image:
    """The stored photograph made from one original file: decoded, oriented, RGB, shrunk."""
    image = ImageOps.exif_transpose(DECODERS[decode](data, shape)).convert("RGB")
    size = fitted_size(image.size, long_side)
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def save_png(image: Image.Image, path: Path) -> None:
    """Write ``image`` as an optimised PNG, atomically (a partial file never has the final name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    image.save(partial, format="PNG", optimize=True)
    os.replace(partial, path)
