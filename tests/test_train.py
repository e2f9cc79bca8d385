"""Training: a short run learns, checkpoints resume, and results are weights-only files."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from models import load_pretrained
from models.noise import NoiseConfig
from scripts.prepare_dataset import prepare_pairs
from scripts.train import TrainConfig, charbonnier, cosine_lr, psnr, summary_table, train, training_runs

from .test_prepare_dataset import write_images


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    write_images(root / "src_train", 4, seed=1, size=(96, 96))
    write_images(root / "src_val", 2, seed=2, size=(96, 96))
    smooth = NoiseConfig.gaussian(25)
    prepare_pairs(root / "src_train", root / "data" / "train", 320, patch=32, seed=0, config=smooth)
    prepare_pairs(root / "src_val", root / "data" / "val", 32, patch=32, seed=1, config=smooth)
    return root / "data"


def config(pairs, tmp_path, **overrides) -> TrainConfig:
    settings = dict(
        model="model_runet", data=pairs, run_dir=tmp_path / "run", weights_dir=tmp_path / "weights",
        arch={"width": 8, "depth": 2}, crop=32, batch=8, lr=2e-3, epochs=3, epoch_patches=160,
        val_limit=None, threads=1,
    )
    return TrainConfig(**{**settings, **overrides})


def log_rows(run_dir) -> list[dict]:
    with (run_dir / "log.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_a_short_run_lowers_the_validation_loss(pairs, tmp_path) -> None:
    summary = train(config(pairs, tmp_path))
    rows = log_rows(tmp_path / "run")
    assert len(rows) == 3
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    assert summary["training"]["val_psnr"] > summary["training"]["val_psnr_noisy"]
    info = json.loads((tmp_path / "weights" / "model_runet.json").read_text())
    assert info["config"] == {"width": 8, "depth": 2}
    assert info["training"]["val_psnr"] == pytest.approx(max(float(r["val_psnr"]) for r in rows), abs=1e-3)
    model = load_pretrained("model_runet", tmp_path / "weights")
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_resume_continues_from_the_checkpoint(pairs, tmp_path) -> None:
    train(config(pairs, tmp_path, epochs=1))
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["state"]["epoch"] == 1
    train(config(pairs, tmp_path, epochs=2, resume=True))
    rows = log_rows(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert int(rows[1]["step"]) == 2 * 160 // 8


def test_minutes_budget_stops_the_run(pairs, tmp_path) -> None:
    train(config(pairs, tmp_path, epochs=100, minutes=0.05))
    rows = log_rows(tmp_path / "run")
    assert 1 <= len(rows) < 100
    assert float(rows[-1]["elapsed_s"]) >= 3.0


def test_schedule_and_metrics() -> None:
    assert cosine_lr(1.0, 0.0) < cosine_lr(1.0, 0.02) == pytest.approx(1.0)
    assert cosine_lr(1.0, 1.0) == pytest.approx(0.01)
    x = torch.rand(2, 3, 8, 8)
    assert psnr(x, x).min() > 100
    assert psnr(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.1)).item() == pytest.approx(20.0)
    assert charbonnier(x, x).item() == pytest.approx(1e-3)


def test_init_fine_tunes_saved_weights_and_the_summary_adds_up(pairs, tmp_path) -> None:
    first = train(config(pairs, tmp_path / "first", epochs=1))
    start = load_pretrained("model_runet", tmp_path / "first" / "weights")
    tuned = config(pairs, tmp_path / "second", epochs=1, lr=1e-9, init=tmp_path / "first" / "weights")
    second = train(tuned)
    assert second["training"]["warm_start"] == first["training"]
    after = load_pretrained("model_runet", tmp_path / "second" / "weights")
    for name, tensor in start.state_dict().items():
        assert torch.allclose(after.state_dict()[name], tensor, atol=1e-6), name
    runs = training_runs(second["training"])
    assert [r["patches_seen"] for r in runs] == [160, 160]
    table = summary_table(tmp_path / "second" / "weights")
    assert "| Residual U-Net | 8 / 2 | 2 | 320 | 32 |" in table
