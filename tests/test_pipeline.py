"""Smoke test of the whole offline pipeline: prepare pairs, train a tiny network, evaluate it.

The photographs are scikit-image's (``tests/photos.py``), written to a temporary folder.
"""
from __future__ import annotations

import json

from scripts.evaluate import main as evaluate_main
from scripts.prepare_dataset import prepare_pairs
from scripts.train import TrainConfig, train
from tests.photos import TRAIN_PHOTOS, VAL_PHOTOS, photo_folder

BATCH = 16
STEPS = 50


def test_prepare_train_evaluate_end_to_end(tmp_path) -> None:
    train_src = photo_folder(tmp_path / "photos" / "train", TRAIN_PHOTOS)
    val_src = photo_folder(tmp_path / "photos" / "val", VAL_PHOTOS)
    data = tmp_path / "data"
    train_meta = prepare_pairs(train_src, data / "train", 512, patch=64, seed=0)
    forbidden = {image["sha256"] for image in train_meta["images"]}
    prepare_pairs(val_src, data / "val", 32, patch=64, seed=1, forbidden=forbidden)
    summary = train(TrainConfig(
        model="model_unet", data=data, run_dir=tmp_path / "run", weights_dir=tmp_path / "weights",
        arch={"width": 8, "depth": 2}, crop=64, batch=BATCH, lr=2e-3, epochs=1, epoch_patches=STEPS * BATCH,
        val_limit=None, threads=2,
    ))
    assert summary["training"]["steps"] == STEPS
    assert summary["training"]["val_psnr"] > summary["training"]["val_psnr_noisy"]
    results = evaluate_main([
        "--images", str(val_src), "--limit", "2", "--settings", "hybrid",
        "--methods", "noisy", "model_unet", "--weights-dir", str(tmp_path / "weights"), "--out", str(tmp_path / "eval"),
    ])
    rows = results["settings"]["hybrid"]["methods"]
    assert rows["model_unet"]["psnr"] > rows["noisy"]["psnr"]
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["count"] == 2
    assert "| U-Net |" in (tmp_path / "eval" / "results.md").read_text()
