"""Tiled inference: exact stitching, tile counts, reflect padding and no visible seams with a trained network."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as sample_images

from models import WEIGHTS_DIR, load_pretrained, weight_paths
from models.noise import NoiseConfig, add_hybrid_noise
from models.tiling import (
    TileConfig,
    blend_window,
    count_tiles,
    denoise_tiled,
    denoise_whole,
    pad_reflect,
    padded_size,
    tile_starts,
)

SIZES = [(1, 1), (1, 7), (5, 3), (31, 33), (64, 64), (65, 100), (129, 47), (150, 211)]
CONFIGS = [TileConfig(32, 0, 1), TileConfig(32, 8, 3), TileConfig(64, 16, 16), TileConfig(64, 31, 2), TileConfig()]


class CountingNetwork(torch.nn.Module):
    """A pointwise network (a random 1x1 convolution plus a bias) that counts the tiles it sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 1)
        self.tiles_seen = 0
        self.largest_batch = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tiles_seen += x.shape[0]
        self.largest_batch = max(self.largest_batch, x.shape[0])
        return self.conv(x)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("height, width", SIZES)
def test_pointwise_network_is_stitched_exactly(height: int, width: int, config: TileConfig) -> None:
    net = CountingNetwork()
    image = torch.rand(3, height, width)
    tiled = denoise_tiled(net, image, config)
    with torch.no_grad():
        untiled = net.conv(image[None])[0]
    assert tiled.shape == image.shape
    torch.testing.assert_close(tiled, untiled, rtol=0, atol=1e-6)
    assert net.tiles_seen == count_tiles(height, width, config)
    assert net.largest_batch <= config.batch_size


def test_identity_is_exact_on_a_large_odd_image() -> None:
    image = torch.rand(3, 301, 257)
    torch.testing.assert_close(denoise_tiled(lambda x: x, image), image, rtol=0, atol=1e-6)


@pytest.mark.parametrize("overlap, height, width, tiles", [
    (32, 1, 1, 1), (32, 64, 64, 1), (32, 65, 64, 2), (32, 128, 128, 4), (32, 1000, 700, 11 * 8),
    (16, 1, 1, 1), (16, 65, 64, 1), (16, 128, 128, 4), (16, 1000, 700, 10 * 7),
])
def test_tile_counts(overlap: int, height: int, width: int, tiles: int) -> None:
    assert count_tiles(height, width, TileConfig(overlap=overlap)) == tiles


def test_tile_starts_cover_the_length_and_end_at_it() -> None:
    assert tile_starts(100, 128, 96) == [0]
    assert tile_starts(300, 128, 96) == [0, 96, 172]
    for length in range(128, 700, 37):
        starts = tile_starts(length, 128, 96)
        assert starts[0] == 0 and starts[-1] + 128 == length
        assert all(0 < b - a <= 96 for a, b in zip(starts, starts[1:]))
    assert padded_size(10, TileConfig(overlap=32)) == 128 and padded_size(100, TileConfig(overlap=32)) == 164


@pytest.mark.parametrize("tile, overlap", [(128, 32), (64, 16), (32, 8), (32, 3), (16, 0)])
def test_neighbouring_windows_sum_to_one_and_discard_the_edges(tile: int, overlap: int) -> None:
    ramp = blend_window(tile, overlap)[tile // 2].double()
    stride = tile - overlap
    assert torch.allclose(ramp[stride:] + ramp[:overlap], torch.ones(overlap, dtype=torch.float64), atol=1e-6)
    assert (ramp[: overlap // 4] == 0).all() and (ramp[overlap:stride] == 1).all()


@pytest.mark.parametrize("size", [1, 2, 3, 6])
@pytest.mark.parametrize("before, after", [(0, 0), (1, 0), (0, 2), (5, 5), (13, 2), (2, 17)])
def test_pad_reflect_matches_numpy_reflect_for_any_amount(size: int, before: int, after: int) -> None:
    image = torch.rand(2, 3, size, size + 1)
    padded = pad_reflect(image, before, after, after, before)
    expected = np.pad(image.numpy(), ((0, 0), (0, 0), (before, after), (after, before)), mode="reflect")
    np.testing.assert_array_equal(padded.numpy(), expected)
    assert pad_reflect(image[0], before, after, 0, 0).shape == (3, size + before + after, size + 1)


def seam_mask(length: int, config: TileConfig) -> np.ndarray:
    """Which image rows (or columns) lie in a blend zone where two tiles meet."""
    padded = np.zeros(padded_size(length, config), dtype=bool)
    for start in tile_starts(len(padded), config.tile, config.tile - config.overlap):
        padded[start:start + config.overlap] = True
        padded[start + config.tile - config.overlap:start + config.tile] = True
    return padded[config.overlap:config.overlap + length]


@pytest.fixture(scope="module")
def weights_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stable snapshot of the trained weights (training may rewrite them at any moment)."""
    copy = tmp_path_factory.mktemp("weights")
    for name in ("model_unet", "model_runet", "model_arunet"):
        for path in weight_paths(name):
            if path.exists():
                shutil.copy(path, copy / path.name)
    return copy


@pytest.mark.parametrize("name", ["model_unet", "model_runet", "model_arunet"])
def test_trained_network_shows_no_seams(name: str, weights_copy: Path) -> None:
    if not (weights_copy / f"{name}.safetensors").exists():
        pytest.skip(f"no trained weights for {name} in {WEIGHTS_DIR}: run 'python -m scripts.training.train --model {name}'")
    net = load_pretrained(name, weights_copy)
    clean = sample_images.astronaut()[100:308, 150:422]
    noisy, _ = add_hybrid_noise(clean, np.random.default_rng(0), NoiseConfig.gaussian(25))
    image = torch.from_numpy(noisy).permute(2, 0, 1).float() / 255
    config = TileConfig()
    difference = (denoise_tiled(net, image, config) - denoise_whole(net, image, net.size_multiple)).abs().mean(0)
    seams = seam_mask(image.shape[1], config)[:, None] | seam_mask(image.shape[2], config)[None, :]
    assert 0.2 < seams.mean() < 0.8
    along_seams, elsewhere = difference.numpy()[seams].mean(), difference.numpy()[~seams].mean()
    assert along_seams <= 1.1 * elsewhere, f"seams {along_seams:.6f} vs elsewhere {elsewhere:.6f}"
