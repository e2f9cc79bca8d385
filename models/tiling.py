"""Overlapping-tile inference: reflect-pad, cut 128x128 tiles, run them in batches, blend back.

Each tile's output is weighted by a separable window. Near its edges a tile's output is the
least trustworthy (the network sees no context beyond the tile), so the outermost quarter of
the overlap is discarded (weight 0), the middle half rises as sin^2 and the rest is 1. Two
neighbours' complementary sin^2/cos^2 ramps sum to one, the weighted sum is divided by the
summed weights, and so a pointwise network gives exactly its untiled output. The image is
reflect-padded by ``overlap`` on every side first, so the image's own border never sits on a
tile's low-weight edge, where the network lacks context.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Network = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TileConfig:
    """Tile side, overlap between neighbours (pixels) and tiles per network call."""

    tile: int = 128
    overlap: int = 16
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not 0 <= 2 * self.overlap < self.tile:
            raise ValueError(f"overlap {self.overlap} must be below half the tile {self.tile}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


def reflect_indices(size: int, before: int, after: int) -> torch.Tensor:
    """Source indices of an axis of ``size`` reflect-padded by ``before`` and ``after`` (any amounts).

    The reflection repeats (a triangle wave of period ``2 * (size - 1)``), as reflecting the
    already padded axis again would; an axis of a single pixel is replicated.
    """
    positions = torch.arange(-before, size + after)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions.remainder(period)
    return torch.where(folded < size, folded, period - folded)


def pad_reflect(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect-pad the last two dimensions by any amount (repeating the reflection as needed)."""
    rows = reflect_indices(x.shape[-2], top, bottom).to(x.device)
    cols = reflect_indices(x.shape[-1], left, right).to(x.device)
    return x[..., rows[:, None], cols[None, :]]


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, length)``; the last ends at ``length``."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def edge_margin(overlap: int) -> int:
    """Pixels at each tile edge whose output is discarded: a quarter of the overlap."""
    return overlap // 4


def blend_window(tile: int, overlap: int) -> torch.Tensor:
    """The 2-D blending weights of one tile: 0 over the edge margin, a sin^2 ramp, then 1 inside."""
    ramp = torch.ones(tile, dtype=torch.float64)
    if overlap > 0:
        margin = edge_margin(overlap)
        rise_length = overlap - 2 * margin
        rise = torch.sin(math.pi / 2 * (torch.arange(rise_length, dtype=torch.float64) + 0.5) / rise_length) ** 2
        edge = torch.cat([torch.zeros(margin, dtype=torch.float64), rise])
        ramp[:overlap - margin] = edge
        ramp[tile - overlap + margin:] = edge.flip(0)
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
        weighted = net(batch).float() * window
        for (y, x), tile_out in zip(batch_positions, weighted):
            out[:, y:y + tile, x:x + tile] += tile_out
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
