"""Smoke test of the whole offline pipeline: train a tiny network on photos degraded on the fly, evaluate it.

The photographs are scikit-image's (``tests/photos.py``), written to a temporary folder.
"""
from __future__ import annotations

import json

from scripts.evaluation.evaluate import main as evaluate_main
from scripts.training.train import TrainConfig, train
from tests.photos import TRAIN_PHOTOS, VAL_PHOTOS, photo_folder

BATCH = 16
STEPS = 50


def test_train_evaluate_end_to_end(tmp_path) -> None:
    train_src = photo_folder(tmp_path / "photos" / "train", TRAIN_PHOTOS)
    val_src = photo_folder(tmp_path / "photos" / "val", VAL_PHOTOS)
    summary = train(TrainConfig(
        model="model_unet", train_src=train_src, val_src=val_src, noise="hybrid", run_dir=tmp_path / "run",
        weights_dir=tmp_path / "weights", arch={"width": 8, "depth": 2}, crops=(64,), batch=BATCH, lr=2e-3,
        epochs=1, epoch_patches=STEPS * BATCH, val_patches=32, val_crop=64, workers=0, threads=2,
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
