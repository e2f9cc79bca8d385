"""The steps both noise models share: the input check, quantisation, salt-and-pepper and JPEG."""
from __future__ import annotations

import numpy as np
import pytest

from models.noise_steps import check_rgb8, jpeg_roundtrip, salt_and_pepper, to_uint8

FLAT = np.full((256, 256, 3), 0.5)


def test_only_uint8_rgb_passes_the_check() -> None:
    check_rgb8(np.zeros((4, 5, 3), np.uint8))
    for wrong in (np.zeros((4, 5), np.uint8), np.zeros((4, 5, 4), np.uint8), np.zeros((4, 5, 3), np.float32)):
        with pytest.raises(ValueError, match="uint8 HxWx3"):
            check_rgb8(wrong)


def test_to_uint8_rounds_and_clips() -> None:
    assert to_uint8(np.array([-0.1, 0.5, 1.2, 0.499 / 255])).tolist() == [0, 128, 255, 0]


def test_salt_and_pepper_hits_the_fraction_with_black_and_white_and_leaves_its_input_alone() -> None:
    noisy = salt_and_pepper(FLAT, np.random.default_rng(0), 0.02)
    hit = (noisy != 0.5).any(axis=2)
    assert hit.mean() == pytest.approx(0.02, abs=0.003)
    assert set(np.unique(noisy[hit])) <= {0.0, 1.0}
    assert (noisy[hit].min(axis=1) == noisy[hit].max(axis=1)).all()
    assert (FLAT == 0.5).all()


def test_salt_and_pepper_clips_first() -> None:
    assert salt_and_pepper(np.full((8, 8, 3), 1.5), np.random.default_rng(0), 0.0).max() == 1.0


def test_jpeg_roundtrip_keeps_the_size_and_loses_detail() -> None:
    clean = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    decoded = jpeg_roundtrip(clean, 50)
    assert decoded.shape == clean.shape and decoded.dtype == np.uint8
    assert not np.array_equal(decoded, clean)
