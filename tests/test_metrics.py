"""The one PSNR: what scikit-image computes, on any dtype and range, and finite for identical images."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from scripts.evaluation.metrics import psnr


def test_psnr_is_scikit_images_on_uint8_images() -> None:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    assert psnr(clean, noisy) == pytest.approx(peak_signal_noise_ratio(clean, noisy, data_range=255), rel=1e-12)


def test_psnr_on_the_unit_range_and_of_identical_images() -> None:
    assert psnr(np.zeros((3, 4, 4)), np.full((3, 4, 4), 0.1, np.float32), data_range=1.0) == pytest.approx(20.0, rel=1e-6)
    x = np.random.default_rng(1).random((3, 8, 8))
    assert psnr(x, x, data_range=1.0) == pytest.approx(120.0)
