"""The hybrid noise model: Poisson, Gaussian, salt-and-pepper and JPEG, in that order.

On a clean 8-bit RGB image ``x`` scaled to [0, 1], with every parameter drawn per call
from the caller's seeded ``numpy.random.Generator``:

1. signal-dependent Poisson noise of variance ``a * x``: ``a * Poisson(x / a)``,
   ``a ~ U[poisson_a]`` (``a == 0`` adds none);
2. additive white Gaussian noise, ``sigma ~ U[gaussian_sigma] / 255``;
3. clip to [0, 1], then salt-and-pepper on a fraction ``p ~ U[salt_pepper]`` of the
   pixels (half set to 0, half to 1, all channels of a pixel alike);
4. quantise to uint8, JPEG-encode at integer quality ``q ~ U{jpeg_quality}`` and decode
   (``jpeg_quality=None`` skips this step).

A range given as ``(v, v)`` fixes the parameter, so ``NoiseConfig.gaussian(25)`` is plain
Gaussian noise of sigma 25, comparable with published Gaussian-denoising results.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .noise_steps import check_rgb8, jpeg_roundtrip, salt_and_pepper, to_uint8

Range = tuple[float, float]


@dataclass(frozen=True)
class NoiseConfig:
    """Ranges the per-image noise parameters are drawn from (sigma on the 0-255 scale)."""

    poisson_a: Range = (0.0, 0.05)
    gaussian_sigma: Range = (0.0, 30.0)
    salt_pepper: Range = (0.001, 0.005)
    jpeg_quality: tuple[int, int] | None = (70, 95)

    @classmethod
    def gaussian(cls, sigma: float) -> NoiseConfig:
        """Additive white Gaussian noise of a fixed sigma (0-255 scale) and nothing else."""
        return cls(poisson_a=(0.0, 0.0), gaussian_sigma=(sigma, sigma), salt_pepper=(0.0, 0.0), jpeg_quality=None)

    def describe(self) -> dict:
        """The configuration as a JSON-ready dictionary."""
        return asdict(self)


@dataclass(frozen=True)
class NoiseParams:
    """The parameters drawn for one image."""

    poisson_a: float
    gaussian_sigma: float
    salt_pepper: float
    jpeg_quality: int | None


def draw_params(rng: np.random.Generator, config: NoiseConfig = NoiseConfig()) -> NoiseParams:
    """Draw one image's noise parameters from ``config``'s ranges."""
    quality = None
    a = float(rng.uniform(*config.poisson_a))
    sigma = float(rng.uniform(*config.gaussian_sigma))
    p = float(rng.uniform(*config.salt_pepper))
    if config.jpeg_quality is not None:
        quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    return NoiseParams(a, sigma, p, quality)


def apply_noise(clean: np.ndarray, params: NoiseParams, rng: np.random.Generator) -> np.ndarray:
    """Degrade a uint8 HxWx3 image with fixed parameters; returns uint8 HxWx3."""
    check_rgb8(clean)
    x = clean.astype(np.float64) / 255.0
    if params.poisson_a > 0:
        x = params.poisson_a * rng.poisson(x / params.poisson_a)
    if params.gaussian_sigma > 0:
        x = x + rng.normal(0.0, params.gaussian_sigma / 255.0, size=x.shape)
    if params.salt_pepper > 0:
        x = salt_and_pepper(x, rng, params.salt_pepper)
    noisy = to_uint8(x)
    if params.jpeg_quality is not None:
        noisy = jpeg_roundtrip(noisy, params.jpeg_quality)
    return noisy


def add_hybrid_noise(
    clean: np.ndarray, rng: np.random.Generator, config: NoiseConfig = NoiseConfig()
) -> tuple[np.ndarray, NoiseParams]:
    """Draw parameters from ``config`` and degrade ``clean``; returns (noisy, parameters)."""
    params = draw_params(rng, config)
    return apply_noise(clean, params, rng), params


class ResidualStats:
    """Running mean and standard deviation of ``noisy - clean`` over many images (0-255 scale)."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0

    def update(self, clean: np.ndarray, noisy: np.ndarray) -> None:
        """Add one clean/noisy pair (or a stack of pairs) to the statistics."""
        diff = noisy.astype(np.float64) - clean.astype(np.float64)
        self.count += diff.size
        self.total += float(diff.sum())
        self.total_sq += float(np.square(diff).sum())

    @property
    def mean(self) -> float:
        """Mean residual."""
        return self.total / max(self.count, 1)

    @property
    def std(self) -> float:
        """Standard deviation of the residual: sigma_eff."""
        return float(np.sqrt(max(self.total_sq / max(self.count, 1) - self.mean**2, 0.0)))
