"""Classical baselines: they denoise, honour the oracle sigma, and bm3d stays optional."""
from __future__ import annotations

import numpy as np
import pytest

from models.noise import NoiseConfig, add_hybrid_noise
from scripts.evaluation import baselines
from scripts.evaluation.baselines import BASELINES, available, centre_crop, oracle_sigma
from scripts.evaluation.metrics import psnr
from tests.photos import synthetic_photo


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A smooth picture without grain (easy to denoise, so every baseline must gain on it) and its noisy copy."""
    clean = synthetic_photo(48, 48, grain=0)
    noisy, _ = add_hybrid_noise(clean, np.random.default_rng(0), NoiseConfig.gaussian(25))
    return clean, noisy


def test_oracle_sigma_is_the_residual_std(pair) -> None:
    clean, noisy = pair
    assert oracle_sigma(clean, noisy) == pytest.approx(np.std(noisy.astype(float) - clean), rel=1e-9)
    assert 20 < oracle_sigma(clean, noisy) < 27


@pytest.mark.parametrize("name", list(BASELINES))
def test_baselines_improve_psnr_and_keep_shape(pair, name: str) -> None:
    if BASELINES[name].needs_bm3d and not baselines.bm3d_available():
        pytest.skip("bm3d not installed")
    clean, noisy = pair
    out = BASELINES[name](noisy, oracle_sigma(clean, noisy), "gaussian25")
    assert out.shape == clean.shape and out.dtype == np.uint8
    assert psnr(clean, out) > psnr(clean, noisy) + 3


def test_missing_bm3d_drops_only_its_baselines(monkeypatch, capsys) -> None:
    monkeypatch.setattr(baselines, "bm3d_available", lambda: False)
    assert available(["noisy", "nlm", "cbm3d", "median_cbm3d", "model_unet"]) == ["noisy", "nlm", "model_unet"]
    assert "pip install bm3d" in capsys.readouterr().out


def test_tune_reports_every_factor(pair, monkeypatch) -> None:
    monkeypatch.setattr(baselines, "bm3d_available", lambda: False)
    scores = baselines.tune([pair], {"nlm": (0.5, 1.0), "cbm3d": (1.0,)})
    assert list(scores) == ["nlm"] and set(scores["nlm"]) == {0.5, 1.0}


def test_every_baseline_has_a_factor_for_every_setting() -> None:
    from models.degradations import PRESETS

    for baseline in BASELINES.values():
        assert all(baseline.factor(setting) > 0 for setting in PRESETS)


def test_centre_crop_handles_small_images() -> None:
    image = np.zeros((10, 30, 3), np.uint8)
    assert centre_crop(image, 8).shape == (8, 8, 3)
    assert centre_crop(image, 20).shape == (10, 20, 3)
