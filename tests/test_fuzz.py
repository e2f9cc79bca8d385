"""Hypothesis fuzzing of the decode path (``models.imaging``) and of tiled inference (``models.tiling``).

The default ``ci`` profile (300 examples per property) keeps the whole module well under a
minute (about 10 s on two busy cores). For a longer hunt (3000 examples, about 5 minutes)::

    DENOISER_FUZZ_PROFILE=long .venv/bin/python -m pytest tests/test_fuzz.py -q

Properties: a valid file of any size, mode and format decodes to a 3xHxW float array in
[0, 1] and re-encodes to a PNG of the same size; a mutated or truncated file either decodes
or raises ``ImageError`` with a 4xx status and a message (never another exception); a
declared size over the pixel limit or the longest-side limit is refused with 413 before
decoding; and tiling with a pointwise network reproduces it exactly for any image size and
tile configuration.
"""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from models.imaging import MAX_PIXELS, MAX_SIDE, ImageError, decode_image, encode_png
from models.tiling import TileConfig, count_tiles, denoise_tiled
from tests.hostile_inputs import encode, noise_image, png_header_only

PROFILES = {
    "ci": settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]),
    "long": settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow]),
}
FUZZ = PROFILES[os.environ.get("DENOISER_FUZZ_PROFILE", "ci")]
# Corrupt files make Pillow warn (bad EXIF/TIFF tags, bomb-sized headers): expected here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]

# Modes each format can store (Pillow writers).
FORMAT_MODES = {
    "PNG": ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"],
    "JPEG": ["RGB", "L", "CMYK"],
    "WEBP": ["RGB", "RGBA"],
    "BMP": ["RGB", "L", "P", "1"],
    "TIFF": ["RGB", "RGBA", "L", "CMYK", "I;16", "1"],
    "GIF": ["P", "L"],
}


def make_file(fmt: str, mode: str, width: int, height: int, seed: int) -> bytes:
    """A valid image file of the given format, mode and size."""
    if mode == "I;16":
        ramp = np.random.default_rng(seed).integers(0, 65536, (height, width), dtype=np.uint16)
        return encode(Image.fromarray(ramp), fmt)
    return encode(noise_image(width, height, mode, seed), fmt)


valid_files = st.sampled_from(sorted(FORMAT_MODES)).flatmap(
    lambda fmt: st.tuples(
        st.just(fmt),
        st.sampled_from(FORMAT_MODES[fmt]),
        st.integers(1, 80),
        st.integers(1, 80),
        st.integers(0, 2**16),
    )
)


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    """A valid file with a few bytes overwritten, a slice removed or inserted, or truncated."""
    data = bytearray(make_file(*draw(valid_files)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "delete", "insert"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[position:]
        elif kind == "delete":
            del data[position:position + draw(st.integers(1, 64))]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


@FUZZ
@given(valid_files)
def test_valid_files_decode_and_reencode_at_their_size(spec: tuple[str, str, int, int, int]) -> None:
    fmt, mode, width, height, seed = spec
    decoded = decode_image(make_file(fmt, mode, width, height, seed))
    assert decoded.pixels.shape == (3, height, width)
    assert decoded.pixels.dtype == np.float32
    assert np.isfinite(decoded.pixels).all()
    assert decoded.pixels.min() >= 0.0 and decoded.pixels.max() <= 1.0
    with Image.open(io.BytesIO(encode_png(decoded, decoded.pixels))) as out:
        assert out.format == "PNG" and out.size == (width, height)


@FUZZ
@given(mutated_files())
def test_mutated_files_decode_or_raise_a_client_error(data: bytes) -> None:
    try:
        decoded = decode_image(data)
    except ImageError as error:
        assert 400 <= error.status < 500
        assert error.message
        return
    assert decoded.pixels.ndim == 3 and decoded.pixels.shape[0] == 3
    assert np.isfinite(decoded.pixels).all()
    assert decoded.pixels.min() >= 0.0 and decoded.pixels.max() <= 1.0
    encode_png(decoded, decoded.pixels)


@FUZZ
@given(st.integers(1, 100_000), st.integers(1, 100_000), st.one_of(st.integers(1, 10_000), st.just(MAX_PIXELS)))
def test_declared_size_over_the_limits_is_refused_before_decoding(width: int, height: int, limit: int) -> None:
    # The file holds no pixel data: a 413 proves the refusal came from the header alone, and a
    # size within both limits goes on to decoding, which fails on the missing data (400).
    with pytest.raises(ImageError) as refused:
        decode_image(png_header_only(width, height), max_pixels=limit)
    if width * height <= limit and max(width, height) <= MAX_SIDE:
        assert refused.value.status == 400
        return
    assert refused.value.status == 413
    assert "limit" in refused.value.message or "longest side" in refused.value.message


tile_configs = st.integers(2, 8).flatmap(
    lambda sixteenths: st.builds(
        TileConfig,
        tile=st.just(16 * sixteenths),
        overlap=st.integers(0, 8 * sixteenths - 1),
        batch_size=st.integers(1, 9),
    )
)


@FUZZ
@given(st.integers(1, 300), st.integers(1, 300), tile_configs)
def test_tiling_a_pointwise_network_is_exact(height: int, width: int, config: TileConfig) -> None:
    seen = []

    def pointwise(batch: torch.Tensor) -> torch.Tensor:
        assert batch.shape[1:] == (3, config.tile, config.tile)
        assert batch.shape[0] <= config.batch_size
        seen.append(batch.shape[0])
        return batch * 0.5 + 0.25

    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height * 1000 + width))
    out = denoise_tiled(pointwise, image, config)
    assert out.shape == image.shape
    assert torch.allclose(out, image * 0.5 + 0.25, atol=1e-5)
    assert sum(seen) == count_tiles(height, width, config)
