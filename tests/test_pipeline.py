"""The request pipeline: what it answers is the tiled network's output as PNG, and its timings are real."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

from models.imaging import ImageError, decode_image, encode_png
from models.pipeline import denoise_bytes
from models.tiling import TileConfig, count_tiles, denoise_tiled
from scripts.evaluation.served import png_bytes
from tests.networks import random_network

TILES = TileConfig(tile=32, overlap=8, batch_size=4)
PIXELS = np.random.default_rng(0).integers(0, 256, (40, 70, 3), dtype=np.uint8)


def test_the_answer_is_the_tiled_output_encoded_like_the_input() -> None:
    net = random_network("model_unet", width=4, depth=2).eval()
    data = png_bytes(PIXELS)
    answer = denoise_bytes(net, data, TILES)
    decoded = decode_image(data)
    expected = encode_png(decoded, denoise_tiled(net, torch.from_numpy(decoded.pixels), TILES).numpy())
    assert answer.png == expected
    assert answer.tiles == count_tiles(40, 70, TILES)
    assert (answer.decoded.width, answer.decoded.height) == (70, 40)


def test_network_seconds_are_measured_inside_the_network_calls() -> None:
    calls = []

    def slow_identity(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        time.sleep(0.02)
        return batch

    answer = denoise_bytes(slow_identity, png_bytes(PIXELS), TILES)
    assert sum(calls) == answer.tiles and len(calls) == -(-answer.tiles // TILES.batch_size)
    assert answer.seconds["network"] >= 0.02 * len(calls)
    assert answer.seconds["total"] >= answer.seconds["network"] + answer.seconds["decode"] + answer.seconds["encode"]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(answer.png))), PIXELS)


def test_bad_input_raises_an_image_error_with_a_status() -> None:
    with pytest.raises(ImageError) as refused:
        denoise_bytes(lambda batch: batch, b"not an image", TILES)
    assert 400 <= refused.value.status < 500
