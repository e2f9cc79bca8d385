"""The steps both noise models share: the seed's hybrid model (``models.noise``) and the blind
training mixture (``models.degradations``) check their input, add salt-and-pepper, quantise to
8 bits and round-trip through JPEG the same way.

Float images are HxWx3 on the [0, 1] scale; the caller's seeded ``numpy.random.Generator``
draws every random value.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def check_rgb8(image: np.ndarray) -> None:
    """Refuse anything but a uint8 HxWx3 image."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Quantise a [0, 1] float image to uint8 (clipping first)."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def salt_and_pepper(x: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """Clip to [0, 1], then set ``fraction`` of the pixels to black or white (half each), all channels of a pixel alike."""
    x = np.clip(x, 0.0, 1.0)
    hit = rng.random(x.shape[:2]) < fraction
    salt = rng.random(x.shape[:2]) < 0.5
    x[hit & salt] = 1.0
    x[hit & ~salt] = 0.0
    return x


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode a uint8 RGB image as JPEG at ``quality`` (4:2:0) and decode it again."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))
