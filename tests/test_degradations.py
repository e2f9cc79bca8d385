"""The blind mixture's components: their statistics, the mixture's coverage and seeded determinism."""
from __future__ import annotations

import numpy as np
import pytest

from models.degradations import (
    PRESETS,
    BlindNoiseConfig,
    gaussian_noise,
    jpeg,
    poisson_noise,
    speckle_noise,
)
from models.noise import NoiseConfig, add_hybrid_noise

FLAT = np.full((256, 256, 3), 0.5)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_color_gaussian_is_independent_per_channel_with_the_asked_sigma() -> None:
    residual = gaussian_noise(FLAT, rng(), 0.1) - FLAT
    assert residual.std() == pytest.approx(0.1, rel=0.02)
    assert abs(np.corrcoef(residual[..., 0].ravel(), residual[..., 1].ravel())[0, 1]) < 0.02


def test_gray_gaussian_is_the_same_on_every_channel() -> None:
    residual = gaussian_noise(FLAT, rng(), 0.1, "gray") - FLAT
    assert residual.std() == pytest.approx(0.1, rel=0.02)
    assert np.array_equal(residual[..., 0], residual[..., 2])


def test_correlated_gaussian_keeps_the_mean_variance_and_correlates_channels() -> None:
    correlations = []
    for seed in range(6):
        residual = (gaussian_noise(FLAT, rng(seed), 0.1, "correlated") - FLAT).reshape(-1, 3)
        assert residual.var(axis=0).mean() == pytest.approx(0.01, rel=0.05)
        correlations.append(np.abs(np.corrcoef(residual.T)[np.triu_indices(3, 1)]).max())
    assert max(correlations) > 0.2
    with pytest.raises(ValueError, match="unknown Gaussian mode"):
        gaussian_noise(FLAT, rng(), 0.1, "pink")


@pytest.mark.parametrize("peak", [10.0, 200.0])
def test_poisson_variance_is_the_signal_over_the_peak(peak: float) -> None:
    for level in (0.2, 0.8):
        clean = np.full((256, 256, 3), level)
        residual = poisson_noise(clean, rng(), peak) - clean
        assert abs(residual.mean()) < 0.01
        assert residual.var() == pytest.approx(level / peak, rel=0.05)


def test_gray_poisson_draws_on_the_luminance_and_shifts_all_channels_alike() -> None:
    clean = np.dstack([np.full((256, 256), v) for v in (0.2, 0.5, 0.8)])
    residual = poisson_noise(clean, rng(), 50.0, gray=True) - clean
    assert np.allclose(residual[..., 0], residual[..., 1])
    luma = clean @ np.array([0.299, 0.587, 0.114])
    assert residual[..., 0].var() == pytest.approx(luma.mean() / 50.0, rel=0.05)


def test_speckle_is_multiplicative() -> None:
    for level in (0.2, 0.8):
        clean = np.full((256, 256, 3), level)
        residual = speckle_noise(clean, rng(), 0.2) - clean
        assert residual.std() == pytest.approx(0.2 * level, rel=0.03)


def test_jpeg_changes_a_textured_image_more_at_low_quality() -> None:
    clean = rng(1).random((64, 64, 3))
    assert np.abs(jpeg(clean, 30) - clean).mean() > np.abs(jpeg(clean, 95) - clean).mean() > 0


def test_the_mixture_is_seeded_and_covers_clean_to_heavy_noise() -> None:
    clean = (rng(2).random((64, 64, 3)) * 255).astype(np.uint8)
    mixture = BlindNoiseConfig()
    assert np.array_equal(mixture(clean, rng(5)), mixture(clean, rng(5)))
    levels = [np.abs(mixture(clean, rng(seed)).astype(float) - clean).std() for seed in range(200)]
    assert min(levels) < 3 and max(levels) > 35
    assert len({round(level, 3) for level in levels}) > 190


def test_a_mixture_of_only_the_hybrid_model_is_the_hybrid_model() -> None:
    clean = (rng(3).random((32, 32, 3)) * 255).astype(np.uint8)
    only_hybrid = BlindNoiseConfig(hybrid_share=1.0)
    generator = rng(9)
    generator.random()
    expected, _ = add_hybrid_noise(clean, generator, NoiseConfig())
    assert np.array_equal(only_hybrid(clean, rng(9)), expected)


def test_a_mixture_of_only_white_gaussian_noise_is_the_gaussian_preset() -> None:
    clean = (rng(3).random((32, 32, 3)) * 255).astype(np.uint8)
    only_awgn = BlindNoiseConfig(hybrid_share=0.0, awgn_share=1.0, gaussian_sigma=(25.0, 25.0))
    generator = rng(9)
    generator.random(), generator.random(), generator.uniform(25.0, 25.0)
    assert np.array_equal(only_awgn(clean, rng(9)), PRESETS["gaussian25"](clean, generator))
    assert not np.array_equal(only_awgn(clean, rng(9)), BlindNoiseConfig(hybrid_share=0.0)(clean, rng(9)))


def test_presets_match_the_hybrid_stream_and_are_reproducible() -> None:
    clean = (rng(4).random((48, 48, 3)) * 255).astype(np.uint8)
    assert set(PRESETS) == {"hybrid", "gaussian15", "gaussian25", "gaussian50", "poisson", "speckle"}
    expected, _ = add_hybrid_noise(clean, rng(1), NoiseConfig.gaussian(25))
    assert np.array_equal(PRESETS["gaussian25"](clean, rng(1)), expected)
    for preset in PRESETS.values():
        assert np.array_equal(preset(clean, rng(8)), preset(clean, rng(8)))
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        PRESETS["speckle"](clean[..., 0], rng())
