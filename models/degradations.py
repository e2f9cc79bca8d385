"""Practical degradations beyond the hybrid model, the blind training mixture and the evaluation presets.

Every function maps a float HxWx3 image on the [0, 1] scale to another, drawing from the
caller's seeded ``numpy.random.Generator``. ``BlindNoiseConfig`` mixes them per patch, in the
spirit of SCUNet's and BSRGAN's practical degradation pipelines: either the seed's hybrid
model (``models.noise``) or one primary noise (white, gray or channel-correlated Gaussian;
Poisson, per channel or on the luminance, down to low light; multiplicative speckle), with or
without JPEG and salt-and-pepper (``models.noise_steps``), the steps in random order.

``PRESETS`` are the fixed evaluation settings: the hybrid model, white Gaussian noise at
sigma 15 / 25 / 50, Poisson noise alone and speckle alone.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .noise import NoiseConfig, add_hybrid_noise
from .noise_steps import check_rgb8, jpeg_roundtrip, salt_and_pepper, to_uint8

Range = tuple[float, float]
Step = Callable[[np.ndarray, np.random.Generator], np.ndarray]
# ITU-R BT.601 luma weights: the luminance that gray Poisson noise is drawn on.
LUMA = np.array([0.299, 0.587, 0.114])
PRIMARY_NOISES = ("gaussian", "poisson", "speckle")


class Degradation(Protocol):
    """Anything that turns a clean uint8 HxWx3 image into a noisy one with the caller's generator."""

    def __call__(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


def gaussian_noise(x: np.ndarray, rng: np.random.Generator, sigma: float, mode: str = "color") -> np.ndarray:
    """Add zero-mean Gaussian noise of per-channel std ``sigma`` (0-1 scale).

    ``mode``: ``color`` independent per channel, ``gray`` one value for all channels,
    ``correlated`` a random 3x3 covariance (random rotation of random variances, mean variance
    ``sigma**2``), as colour cameras' demosaicking leaves it.
    """
    if mode == "gray":
        return x + rng.normal(0.0, sigma, size=x.shape[:2] + (1,))
    if mode == "color":
        return x + rng.normal(0.0, sigma, size=x.shape)
    if mode == "correlated":
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        variances = rng.uniform(0.05, 1.0, size=3)
        covariance = rotation @ np.diag(variances * 3 / variances.sum()) @ rotation.T * sigma**2
        return x + rng.multivariate_normal(np.zeros(3), covariance, size=x.shape[:2], method="cholesky")
    raise ValueError(f"unknown Gaussian mode {mode!r}")


def poisson_noise(x: np.ndarray, rng: np.random.Generator, peak: float, gray: bool = False) -> np.ndarray:
    """Photon noise: ``Poisson(x * peak) / peak`` (variance ``x / peak``); ``gray`` draws it on the luminance.

    A low ``peak`` (a few photons at full scale) is a low-light exposure amplified to full range.
    """
    x = np.clip(x, 0.0, 1.0)
    if not gray:
        return rng.poisson(x * peak) / peak
    luma = x @ LUMA
    return x + (rng.poisson(luma * peak) / peak - luma)[..., None]


def speckle_noise(x: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Multiplicative noise ``x * (1 + n)``, ``n ~ N(0, sigma**2)`` per pixel and channel (ultrasound, radar)."""
    return x * (1.0 + rng.normal(0.0, sigma, size=x.shape))


def jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    """Quantise to 8 bits, JPEG-encode at ``quality`` and decode (back on the 0-1 scale)."""
    return jpeg_roundtrip(to_uint8(x), quality).astype(np.float64) / 255.0


def log_uniform(rng: np.random.Generator, bounds: Range) -> float:
    """A draw uniform in log space between ``bounds``."""
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


@dataclass(frozen=True)
class BlindNoiseConfig:
    """The blind training mixture: what share of patches gets which degradation, and the ranges drawn from.

    Sigmas are on the 0-255 scale; ``poisson_peak`` is photons at full scale (log-uniform);
    ``speckle_sigma`` is the multiplicative std. A share of 0 switches a component off.
    ``awgn_share`` of the patches the hybrid model leaves get white colour Gaussian noise alone
    (sigma uniform in ``gaussian_sigma``), exactly as the Gaussian presets degrade.
    """

    hybrid_share: float = 0.25
    awgn_share: float = 0.0
    hybrid: NoiseConfig = NoiseConfig()
    primary_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)
    gaussian_sigma: Range = (0.0, 55.0)
    gaussian_modes: tuple[float, float, float] = (0.5, 0.25, 0.25)
    poisson_peak: Range = (10.0, 1000.0)
    poisson_gray_share: float = 0.3
    speckle_sigma: Range = (0.0, 0.3)
    jpeg_share: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)
    salt_pepper_share: float = 0.3
    salt_pepper: Range = (0.0005, 0.01)

    def __call__(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade one uint8 HxWx3 image with a fresh draw from the mixture."""
        check_rgb8(clean)
        if rng.random() < self.hybrid_share:
            return add_hybrid_noise(clean, rng, self.hybrid)[0]
        if self.awgn_share and rng.random() < self.awgn_share:
            sigma = float(rng.uniform(*self.gaussian_sigma))
            return add_hybrid_noise(clean, rng, NoiseConfig.gaussian(sigma))[0]
        steps = [self.primary_step(rng)]
        if rng.random() < self.jpeg_share:
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            steps.append(lambda x, r: jpeg(x, quality))
        if rng.random() < self.salt_pepper_share:
            fraction = float(rng.uniform(*self.salt_pepper))
            steps.append(lambda x, r: salt_and_pepper(x, r, fraction))
        x = clean.astype(np.float64) / 255.0
        for index in rng.permutation(len(steps)):
            x = steps[index](x, rng)
        return to_uint8(x)

    def primary_step(self, rng: np.random.Generator) -> Step:
        """Draw the primary noise and its parameters."""
        weights = np.asarray(self.primary_weights) / sum(self.primary_weights)
        kind = PRIMARY_NOISES[rng.choice(3, p=weights)]
        if kind == "gaussian":
            sigma = float(rng.uniform(*self.gaussian_sigma)) / 255.0
            modes = np.asarray(self.gaussian_modes) / sum(self.gaussian_modes)
            mode = ("color", "gray", "correlated")[rng.choice(3, p=modes)]
            return lambda x, r: gaussian_noise(x, r, sigma, mode)
        if kind == "poisson":
            peak = log_uniform(rng, self.poisson_peak)
            gray = bool(rng.random() < self.poisson_gray_share)
            return lambda x, r: poisson_noise(x, r, peak, gray)
        sigma = float(rng.uniform(*self.speckle_sigma))
        return lambda x, r: speckle_noise(x, r, sigma)


@dataclass(frozen=True)
class HybridPreset:
    """The seed's hybrid model (or a fixed corner of it) as a ``Degradation``."""

    config: NoiseConfig = NoiseConfig()

    def __call__(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade ``clean`` with parameters drawn from ``config``."""
        return add_hybrid_noise(clean, rng, self.config)[0]


@dataclass(frozen=True)
class SpecklePreset:
    """Speckle alone at a fixed multiplicative std."""

    sigma: float

    def __call__(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade ``clean`` with multiplicative noise of std ``sigma``."""
        check_rgb8(clean)
        return to_uint8(speckle_noise(clean.astype(np.float64) / 255.0, rng, self.sigma))


# Poisson alone at a = 0.02 (50 photons at full scale: std 25/255 at mid-gray); speckle alone at std 0.2.
PRESETS: dict[str, Degradation] = {
    "hybrid": HybridPreset(),
    "gaussian15": HybridPreset(NoiseConfig.gaussian(15)),
    "gaussian25": HybridPreset(NoiseConfig.gaussian(25)),
    "gaussian50": HybridPreset(NoiseConfig.gaussian(50)),
    "poisson": HybridPreset(NoiseConfig(poisson_a=(0.02, 0.02), gaussian_sigma=(0, 0), salt_pepper=(0, 0), jpeg_quality=None)),
    "speckle": SpecklePreset(0.2),
}


def degrade(clean: np.ndarray, setting: str, index: int, seed: int = 0) -> np.ndarray:
    """The noisy version of image number ``index`` under preset ``setting``, from ``default_rng([seed, index])``."""
    return PRESETS[setting](clean, np.random.default_rng([seed, index]))
