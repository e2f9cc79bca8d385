"""The request pipeline, once: image bytes -> decode -> tiled network -> PNG bytes, timed step by step.

The handler, the benchmark, the evaluation and the tests all call ``denoise_bytes``, so what
is measured and scored is exactly what is served.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .imaging import MAX_PIXELS, DecodedImage, OutputImage, decode_image
from .tiling import Network, TileConfig, count_tiles, denoise_streamed


class TimedNetwork:
    """Wraps a network and adds up the seconds spent inside its calls."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.seconds = 0.0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        result = self.net(batch)
        self.seconds += time.perf_counter() - start
        return result


@dataclass(frozen=True)
class Denoised:
    """One answered request: the PNG, the decoded input, the tiles run and each step's seconds."""

    png: bytes
    decoded: DecodedImage
    tiles: int
    seconds: dict[str, float] = field(default_factory=dict)


def denoise_bytes(
    net: Network, data: bytes, tiles: TileConfig = TileConfig(), max_pixels: int = MAX_PIXELS,
    device: torch.device = torch.device("cpu"),
) -> Denoised:
    """Decode ``data``, denoise it tile by tile with ``net`` on ``device`` and encode the PNG answer.

    Memory beyond the decoded samples and the answer's pixels is a band of tile rows: finished
    rows are quantised into the answer as they come (``models.tiling.denoise_streamed``).

    Raises ``models.imaging.ImageError`` (with its HTTP status) for input that is not a
    usable image or is over the limits.
    """
    start = time.perf_counter()
    decoded = decode_image(data, max_pixels)
    decoded_at = time.perf_counter()
    timed = TimedNetwork(net)
    answer = OutputImage(decoded)

    def read(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(decoded.tile(rows.numpy(), cols.numpy()))

    def write(first: int, rows: torch.Tensor) -> None:
        answer.write_rows(first, rows.cpu().numpy())

    denoise_streamed(timed, read, decoded.height, decoded.width, write, tiles, device)
    denoised_at = time.perf_counter()
    png = answer.png()
    end = time.perf_counter()
    seconds = {
        "decode": decoded_at - start,
        "tiling": denoised_at - decoded_at - timed.seconds,
        "network": timed.seconds,
        "encode": end - denoised_at,
        "total": end - start,
    }
    return Denoised(png, decoded, count_tiles(decoded.height, decoded.width, tiles), seconds)
