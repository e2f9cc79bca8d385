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


TileReader = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
RowWriter = Callable[[int, torch.Tensor], None]


@torch.inference_mode()
def denoise_streamed(
    net: Network, read: TileReader, height: int, width: int, write: RowWriter,
    config: TileConfig = TileConfig(), device: torch.device = torch.device("cpu"),
) -> None:
    """Run ``net`` over an image of ``height`` x ``width`` tile by tile, handing finished rows to ``write``.

    ``read(rows, cols)`` returns the CxTxT float tile at those source indices (the reflect padding
    is in the indices, so no padded copy of the image is made); ``write(first_row, rows)`` receives
    each band of blended CxhxW output rows as soon as no later tile touches it, top to bottom.
    Working memory is a band of about two tile rows, whatever the image's size; the sums and the
    division are those of blending the whole padded image at once, in the same order.
    """
    tile, overlap = config.tile, config.overlap
    padded_h, padded_w = padded_size(height, config), padded_size(width, config)
    row_index = reflect_indices(height, overlap, padded_h - height - overlap)
    col_index = reflect_indices(width, overlap, padded_w - width - overlap)
    window = blend_window(tile, overlap).to(device)
    stride = tile - overlap
    positions = [(y, x) for y in tile_starts(padded_h, tile, stride) for x in tile_starts(padded_w, tile, stride)]
    band_start, out, weight = 0, None, torch.zeros(0, padded_w, device=device)
    for first in range(0, len(positions), config.batch_size):
        batch_positions = positions[first:first + config.batch_size]
        batch = torch.stack([read(row_index[y:y + tile], col_index[x:x + tile]) for y, x in batch_positions]).to(device)
        weighted = net(batch).float() * window
        grow = batch_positions[-1][0] + tile - band_start - weight.shape[0]
        if out is None:
            out = torch.zeros(weighted.shape[1], 0, padded_w, device=device)
        if grow > 0:
            out = torch.cat([out, out.new_zeros(out.shape[0], grow, padded_w)], dim=1)
            weight = torch.cat([weight, weight.new_zeros(grow, padded_w)])
        for (y, x), tile_out in zip(batch_positions, weighted):
            out[:, y - band_start:y - band_start + tile, x:x + tile] += tile_out
            weight[y - band_start:y - band_start + tile, x:x + tile] += window
        done = positions[first + config.batch_size][0] if first + config.batch_size < len(positions) else padded_h
        top, bottom = max(band_start, overlap), min(done, overlap + height)
        if bottom > top:
            rows = slice(top - band_start, bottom - band_start)
            write(top - overlap, out[:, rows, overlap:overlap + width] / weight[rows, overlap:overlap + width])
        out, weight = out[:, done - band_start:].clone(), weight[done - band_start:].clone()
        band_start = done


def denoise_tiled(net: Network, image: torch.Tensor, config: TileConfig = TileConfig()) -> torch.Tensor:
    """Run ``net`` over a CxHxW float image tile by tile and return the blended CxHxW result (``denoise_streamed``)."""
    channels, height, width = image.shape
    result = torch.empty(channels, height, width, device=image.device)

    def read(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return image[:, rows.to(image.device)[:, None], cols.to(image.device)[None, :]].float()

    def write(first: int, rows: torch.Tensor) -> None:
        result[:, first:first + rows.shape[1]] = rows

    denoise_streamed(net, read, height, width, write, config, image.device)
    return result


@torch.inference_mode()
def denoise_whole(net: Network, image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Run ``net`` once over the whole CxHxW image, reflect-padded up to ``multiple``."""
    _, height, width = image.shape
    pad_h, pad_w = -height % multiple, -width % multiple
    padded = pad_reflect(image.float(), 0, pad_h, 0, pad_w)
    return net(padded.unsqueeze(0)).float()[0, :, :height, :width]
