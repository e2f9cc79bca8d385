"""The hybrid noise model: each component's statistics, determinism and sigma_eff."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.noise import NoiseConfig, NoiseParams, ResidualStats, add_hybrid_noise, apply_noise, draw_params

GRAY = np.full((256, 256, 3), 128, dtype=np.uint8)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_gaussian_only_has_zero_mean_and_the_asked_sigma() -> None:
    noisy, params = add_hybrid_noise(GRAY, rng(), NoiseConfig.gaussian(25))
    residual = noisy.astype(float) - GRAY
    assert params == NoiseParams(0.0, 25.0, 0.0, None)
    assert abs(residual.mean()) < 0.3
    assert residual.std() == pytest.approx(25, rel=0.03)


def test_poisson_variance_follows_the_signal() -> None:
    params = NoiseParams(poisson_a=0.02, gaussian_sigma=0.0, salt_pepper=0.0, jpeg_quality=None)
    for level in (64, 192):
        clean = np.full((256, 256, 3), level, dtype=np.uint8)
        residual = (apply_noise(clean, params, rng()).astype(float) - clean) / 255
        assert residual.var() == pytest.approx(0.02 * level / 255, rel=0.1)


def test_salt_and_pepper_fraction_lands_in_range_and_hits_all_channels() -> None:
    config = NoiseConfig(poisson_a=(0, 0), gaussian_sigma=(0, 0), salt_pepper=(0.001, 0.005), jpeg_quality=None)
    for seed in range(5):
        noisy, params = add_hybrid_noise(GRAY, rng(seed), config)
        hit = (noisy != 128).any(axis=2)
        assert 0.001 <= params.salt_pepper <= 0.005
        assert hit.mean() == pytest.approx(params.salt_pepper, abs=0.0015)
        assert set(np.unique(noisy[hit])) <= {0, 255}
        assert (noisy[hit].min(axis=1) == noisy[hit].max(axis=1)).all()


def test_jpeg_is_applied() -> None:
    clean = rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    params = NoiseParams(0.0, 0.0, 0.0, 75)
    noisy = apply_noise(clean, params, rng())
    assert not np.array_equal(noisy, clean)
    assert np.array_equal(apply_noise(clean, NoiseParams(0.0, 0.0, 0.0, None), rng()), clean)


def test_a_one_value_range_fixes_its_parameter_and_the_quality_range_includes_both_ends() -> None:
    config = NoiseConfig(poisson_a=(0.01, 0.01), gaussian_sigma=(7.0, 7.0), salt_pepper=(0.002, 0.002), jpeg_quality=(80, 81))
    draws = [draw_params(rng(seed), config) for seed in range(40)]
    assert {(p.poisson_a, p.gaussian_sigma, p.salt_pepper) for p in draws} == {(0.01, 7.0, 0.002)}
    assert {p.jpeg_quality for p in draws} == {80, 81}
    assert draw_params(rng(), replace(config, jpeg_quality=None)).jpeg_quality is None


def test_same_seed_gives_the_same_noise() -> None:
    a, pa = add_hybrid_noise(GRAY, rng(7))
    b, pb = add_hybrid_noise(GRAY, rng(7))
    assert pa == pb and np.array_equal(a, b)


def test_sigma_eff_is_the_std_over_all_pixels_of_the_set() -> None:
    pairs = [add_hybrid_noise(GRAY, rng(s), NoiseConfig.gaussian(s * 10 + 5)) for s in range(3)]
    residuals = np.concatenate([(n.astype(float) - GRAY).ravel() for n, _ in pairs])
    stats = ResidualStats()
    for noisy, _ in pairs:
        stats.update(GRAY, noisy)
    assert (stats.mean, stats.std) == (pytest.approx(residuals.mean(), abs=1e-9), pytest.approx(residuals.std(), rel=1e-9))


def test_rejects_non_rgb_uint8() -> None:
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        add_hybrid_noise(GRAY[..., 0], rng())
