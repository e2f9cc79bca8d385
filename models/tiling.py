"""Overlapping-tile inference: reflect-pad, cut 128x128 tiles, run them in batches, blend back.

Each tile's output is weighted by a separable window that is 1 in the middle and rises as
sin^2 over ``overlap`` pixels at each edge, and the weighted sum is divided by the summed
weights. Complementary sin^2/cos^2 ramps sum to one, so no seam shows, and because the
result is a normalised average, a pointwise network gives exactly its untiled output.
The image is reflect-padded by ``overlap`` on every side first, so the image's own border
never sits on a tile's low-weight edge, where the network lacks context.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Network = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TileConfig:
    """Tile side, overlap between neighbours (pixels) and tiles per network call."""

    tile: int = 128
    overlap: int = 32
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not 0 <= 2 * self.overlap < self.tile:
            raise ValueError(f"overlap {self.overlap} must be below half the tile {self.tile}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


def pad_reflect(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect-pad the last two dimensions by any amount (repeating the reflection as needed).

    A side of a single pixel cannot be reflected and is replicated instead.
    """
    for dim, (before, after) in ((-2, (top, bottom)), (-1, (left, right))):
        while before > 0 or after > 0:
            size = x.shape[dim]
            step_before, step_after = min(before, size - 1), min(after, size - 1)
            pads = [0, 0, 0, 0]
            offset = 0 if dim == -1 else 2
            if size == 1:
                pads[offset:offset + 2] = [before, after]
                x = F.pad(x.unsqueeze(0), pads, mode="replicate").squeeze(0) if x.dim() == 3 else F.pad(x, pads, mode="replicate")
                break
            pads[offset:offset + 2] = [step_before, step_after]
            x = F.pad(x.unsqueeze(0), pads, mode="reflect").squeeze(0) if x.dim() == 3 else F.pad(x, pads, mode="reflect")
            before, after = before - step_before, after - step_after
    return x


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, length)``; the last ends at ``length``."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def blend_window(tile: int, overlap: int) -> torch.Tensor:
    """The 2-D blending weights of one tile: sin^2 ramps over ``overlap`` pixels, 1 inside."""
    ramp = torch.ones(tile, dtype=torch.float64)
    if overlap > 0:
        rise = torch.sin(math.pi / 2 * (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap) ** 2
        ramp[:overlap] = rise
        ramp[-overlap:] = rise.flip(0)
    return (ramp[:, None] * ramp[None, :]).float()


def padded_size(length: int, config: TileConfig) -> int:
    """Length of one side after the reflect margin (and growth to at least one tile)."""
    return max(length + 2 * config.overlap, config.tile)


def count_tiles(height: int, width: int, config: TileConfig = TileConfig()) -> int:
    """Number of tiles ``denoise_tiled`` runs for an image of this size."""
    stride = config.tile - config.overlap
    rows = tile_starts(padded_size(height, config), config.tile, stride)
    cols = tile_starts(padded_size(width, config), config.tile, stride)
    return len(rows) * len(cols)


@torch.inference_mode()
def denoise_tiled(net: Network, image: torch.Tensor, config: TileConfig = TileConfig()) -> torch.Tensor:
    """Run ``net`` over a CxHxW float image tile by tile and return the blended CxHxW result.

    Memory grows with the image only through the padded input and two accumulators; the
    network sees at most ``config.batch_size`` tiles at a time.
    """
    channels, height, width = image.shape
    tile, overlap = config.tile, config.overlap
    padded_h, padded_w = padded_size(height, config), padded_size(width, config)
    padded = pad_reflect(
        image.float(), overlap, padded_h - height - overlap, overlap, padded_w - width - overlap
    )
    window = blend_window(tile, overlap).to(padded.device)
    out = torch.zeros_like(padded)
    weight = torch.zeros(padded_h, padded_w, dtype=padded.dtype, device=padded.device)
    stride = tile - overlap
    positions = [
        (y, x)
        for y in tile_starts(padded_h, tile, stride)
        for x in tile_starts(padded_w, tile, stride)
    ]
    for first in range(0, len(positions), config.batch_size):
        batch_positions = positions[first:first + config.batch_size]
        batch = torch.stack([padded[:, y:y + tile, x:x + tile] for y, x in batch_positions])
        result = net(batch).float()
        for (y, x), tile_out in zip(batch_positions, result):
            out[:, y:y + tile, x:x + tile] += tile_out * window
            weight[y:y + tile, x:x + tile] += window
    out /= weight
    return out[:, overlap:overlap + height, overlap:overlap + width]


@torch.inference_mode()
def denoise_whole(net: Network, image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Run ``net`` once over the whole CxHxW image, reflect-padded up to ``multiple``."""
    _, height, width = image.shape
    pad_h, pad_w = -height % multiple, -width % multiple
    padded = pad_reflect(image.float(), 0, pad_h, 0, pad_w)
    return net(padded.unsqueeze(0)).float()[0, :, :height, :width]
