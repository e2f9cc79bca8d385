"""Image quality: the one PSNR that training, evaluation, the baselines' tuning and the collage report."""
from __future__ import annotations

import numpy as np

# The PSNR of identical images: a mean squared error floor of 1e-12 of the range squared (120 dB).
MSE_FLOOR = 1e-12


def psnr(reference: np.ndarray, result: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of ``result`` against ``reference`` (same shape, any dtype), capped at 120 dB."""
    mse = float(np.mean(np.square(reference.astype(np.float64) - result.astype(np.float64))))
    return float(10 * np.log10(data_range**2 / max(mse, MSE_FLOOR * data_range**2)))
