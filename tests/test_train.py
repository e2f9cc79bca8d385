"""Training: a short run learns, checkpoints resume, and results are weights-only files."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from models import load_pretrained
from models.degradations import BlindNoiseConfig
from scripts.paths import REPO
from scripts.training import train as train_module
from scripts.training.train import (
    StopFlag,
    TrainConfig,
    blank_batches,
    charbonnier,
    cosine_lr,
    measure,
    summary_table,
    train,
    training_bf16,
    training_runs,
)
from tests.photos import synthetic_folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    synthetic_folder(root / "train", 4, (96, 96), seed=1)
    synthetic_folder(root / "val", 2, (96, 96), seed=100)
    return root


def config(photos, tmp_path, **overrides) -> TrainConfig:
    settings = dict(
        model="model_runet", train_src=photos / "train", val_src=photos / "val", noise="gaussian25",
        run_dir=tmp_path / "run", weights_dir=tmp_path / "weights", arch={"width": 8, "depth": 2},
        crops=(32,), batch=8, lr=2e-3, epochs=3, epoch_patches=160, val_patches=16, val_crop=32,
        workers=0, threads=1, precision="fp32",
    )
    return TrainConfig(**{**settings, **overrides})


def log_rows(run_dir) -> list[dict]:
    with (run_dir / "log.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_a_short_run_lowers_the_validation_loss(photos, tmp_path) -> None:
    summary = train(config(photos, tmp_path))
    rows = log_rows(tmp_path / "run")
    assert len(rows) == 3
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    assert summary["training"]["val_psnr"] > summary["training"]["val_psnr_noisy"]
    info = json.loads((tmp_path / "weights" / "model_runet.json").read_text())
    assert info["config"] == {"width": 8, "depth": 2}
    assert info["training"]["val_psnr"] == pytest.approx(max(float(r["val_psnr"]) for r in rows), abs=1e-3)
    model = load_pretrained("model_runet", tmp_path / "weights")
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_resume_continues_from_the_checkpoint(photos, tmp_path) -> None:
    train(config(photos, tmp_path, epochs=1))
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["state"]["epoch"] == 1
    train(config(photos, tmp_path, epochs=2, resume=True))
    rows = log_rows(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert int(rows[1]["step"]) == 2 * 160 // 8


def test_minutes_budget_stops_the_run(photos, tmp_path) -> None:
    train(config(photos, tmp_path, epochs=100, minutes=0.05))
    rows = log_rows(tmp_path / "run")
    assert 1 <= len(rows) < 100
    assert float(rows[-1]["elapsed_s"]) >= 3.0


def test_schedule_and_metrics() -> None:
    assert cosine_lr(1.0, 0.0) < cosine_lr(1.0, 0.02) == pytest.approx(1.0)
    assert cosine_lr(1.0, 1.0) == pytest.approx(0.01)
    x = torch.rand(2, 3, 8, 8)
    assert charbonnier(x, x).item() == pytest.approx(1e-3)


def test_init_fine_tunes_saved_weights_and_the_summary_adds_up(photos, tmp_path) -> None:
    first = train(config(photos, tmp_path / "first", epochs=1))
    second = train(config(photos, tmp_path / "second", epochs=1, init=tmp_path / "first" / "weights"))
    assert second["training"]["warm_start"] == first["training"]
    assert second["training"]["val_psnr"] > first["training"]["val_psnr"]
    runs = training_runs(second["training"])
    assert [r["patches_seen"] for r in runs] == [160, 160]
    table = summary_table(tmp_path / "second" / "weights")
    assert "| Residual U-Net | 8 / 2 | 2 | 320 | gaussian25 | 32 |" in table
    assert "| cpu (1 threads), fp32 |" in table


def test_a_fine_tune_that_never_beats_its_start_writes_no_weights(photos, tmp_path, capsys) -> None:
    first = train(config(photos, tmp_path / "first", epochs=1))
    start = load_pretrained("model_runet", tmp_path / "first" / "weights")
    assert train(config(photos, tmp_path / "second", epochs=1, lr=0.0, init=tmp_path / "first" / "weights")) == {}
    assert not (tmp_path / "second" / "weights").exists()
    assert "starts from" in capsys.readouterr().out
    (row,) = log_rows(tmp_path / "second" / "run")
    assert float(row["val_psnr"]) == pytest.approx(first["training"]["val_psnr"], abs=1e-3)
    kept = load_pretrained("model_runet", tmp_path / "first" / "weights")
    for name, tensor in start.state_dict().items():
        assert torch.equal(kept.state_dict()[name], tensor), name


def test_hybrid_share_changes_the_training_mixture_only(photos, tmp_path) -> None:
    cfg = config(photos, tmp_path, noise="blind", hybrid_share=1.0, epochs=1)
    assert cfg.training_noise() == BlindNoiseConfig(hybrid_share=1.0)
    assert config(photos, tmp_path, noise="blind").training_noise() == BlindNoiseConfig()
    summary = train(cfg)
    assert summary["training"]["noise"] == "blind" and summary["training"]["hybrid_share"] == 1.0
    assert "| blind, hybrid share 1.0 |" in summary_table(tmp_path / "weights")


def test_awgn_share_changes_the_training_mixture_and_is_recorded(photos, tmp_path) -> None:
    cfg = config(photos, tmp_path, noise="blind", hybrid_share=0.2, awgn_share=0.5, epochs=1)
    assert cfg.training_noise() == BlindNoiseConfig(hybrid_share=0.2, awgn_share=0.5)
    summary = train(cfg)
    assert summary["training"]["awgn_share"] == 0.5 and summary["training"]["hybrid_share"] == 0.2
    assert "| blind, hybrid share 0.2, awgn share 0.5 |" in summary_table(tmp_path / "weights")


def test_crops_grow_over_the_run_at_constant_pixels_per_batch(photos, tmp_path) -> None:
    cfg = config(photos, tmp_path, crops=(16, 32), epochs=2, epoch_patches=64)
    assert [cfg.crop_at(p) for p in (0.0, 0.49, 0.5, 1.0)] == [16, 16, 32, 32]
    assert cfg.batch_for(16) == 8 and cfg.batch_for(32) == 2
    train(cfg)
    assert [int(r["crop"]) for r in log_rows(tmp_path / "run")] == [16, 32]


def test_both_raw_and_ema_weights_are_scored(photos, tmp_path) -> None:
    summary = train(config(photos, tmp_path, epochs=1, ema=0.5))
    row = log_rows(tmp_path / "run")[0]
    assert float(row["val_psnr"]) == max(float(row["val_psnr_raw"]), float(row["val_psnr_ema"]))
    assert summary["training"]["weights"] in {"raw", "ema"}
    assert summary["training"]["precision"] == "fp32" and summary["training"]["patches_per_s"] > 0


@pytest.mark.parametrize("overrides", [{"minutes": 0}, {"epochs": 0}, {"epoch_patches": 4}, {"noise": "pink"},
                                       {"hybrid_share": 0.5}, {"noise": "blind", "hybrid_share": 1.5},
                                       {"awgn_share": 0.5}, {"noise": "blind", "awgn_share": -0.1}])
def test_budgets_that_give_no_step_and_unknown_or_mismatched_noise_are_refused(photos, tmp_path, overrides) -> None:
    with pytest.raises(ValueError):
        config(photos, tmp_path, **overrides)


def test_stop_flag_catches_sigterm_and_restores_the_previous_handlers() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    with StopFlag().installed() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.raised
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_measure_reports_loader_and_step_rates_in_both_precisions(photos, tmp_path) -> None:
    rates = measure(config(photos, tmp_path), batches_timed=2)
    assert rates["loader_patches_per_s"] > 0
    assert rates["step_patches_per_s_fp32"] > 0 and rates["step_patches_per_s_bf16"] > 0
    assert rates["precision"] in {"fp32", "bf16"}


@pytest.mark.parametrize(("fp32", "bf16", "chosen"), [(105.0, 54.0, False), (50.0, 90.0, True)])
def test_auto_precision_trains_in_the_precision_measured_faster(photos, tmp_path, monkeypatch, capsys,
                                                                fp32, bf16, chosen) -> None:
    monkeypatch.setattr(train_module, "native_bf16", lambda device: True)
    timed = []
    monkeypatch.setattr(train_module, "step_rates",
                        lambda cfg, device, held, rounds: timed.append(len(held)) or {"fp32": fp32, "bf16": bf16})
    assert training_bf16(config(photos, tmp_path, precision="auto"), torch.device("cpu")) is chosen
    assert timed == [3] and f"{fp32:.0f} patches/s in fp32, {bf16:.0f} in bf16" in capsys.readouterr().out


def test_auto_precision_without_native_bf16_and_an_explicit_one_measure_nothing(photos, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(train_module, "native_bf16", lambda device: False)
    monkeypatch.setattr(train_module, "step_rates", lambda *args: pytest.fail("timed the steps"))
    cpu = torch.device("cpu")
    assert training_bf16(config(photos, tmp_path, precision="auto"), cpu) is False
    assert training_bf16(config(photos, tmp_path, precision="bf16"), cpu) is True


def test_a_real_auto_run_records_the_precision_it_measured(photos, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(train_module, "native_bf16", lambda device: True)
    summary = train(config(photos, tmp_path, epochs=1, precision="auto"))
    assert summary["training"]["precision"] in {"fp32", "bf16"}


def test_blank_batches_have_the_first_crop_and_its_batch(photos, tmp_path) -> None:
    cfg = config(photos, tmp_path, crops=(16, 32))
    (noisy, clean), *_ = blank_batches(cfg, 2)
    assert noisy.shape == clean.shape == (cfg.batch_for(16), 16, 16, 3) and noisy.dtype == torch.uint8


def test_init_with_narrower_weights_widens_them_and_starts_from_their_score(photos, tmp_path, capsys) -> None:
    first = train(config(photos, tmp_path / "first", epochs=1))
    capsys.readouterr()
    second = train(config(photos, tmp_path / "second", epochs=1, arch={"width": 16, "depth": 2},
                          init=tmp_path / "first" / "weights"))
    printed = capsys.readouterr().out
    assert "the width-8 weights in" in printed and "widened to width 16" in printed
    start = float(printed.split("val PSNR ")[1].split(" dB")[0])
    assert start == pytest.approx(first["training"]["val_psnr"], abs=0.01)
    assert second["config"] == {"width": 16, "depth": 2}
    assert second["training"]["warm_start"] == {**first["training"], "widened_from": 8}


def test_init_model_grafts_cbam_onto_the_residual_unet_and_starts_from_its_score(photos, tmp_path, capsys) -> None:
    first = train(config(photos, tmp_path / "first", epochs=1))
    capsys.readouterr()
    second = train(config(photos, tmp_path / "second", model="model_arunet", epochs=1, arch={"width": 16, "depth": 2},
                          init=tmp_path / "first" / "weights", init_model="model_runet"))
    printed = capsys.readouterr().out
    assert "widened to width 16" in printed and "attention grafted onto the model_runet weights" in printed
    start = float(printed.split("val PSNR ")[1].split(" dB")[0])
    assert start == pytest.approx(first["training"]["val_psnr"], abs=0.01)
    assert second["training"]["warm_start"] == {**first["training"], "widened_from": 8, "grafted_from": "model_runet"}


def test_init_model_refuses_a_pair_that_cannot_graft(photos, tmp_path) -> None:
    train(config(photos, tmp_path / "first", model="model_unet", epochs=1))
    with pytest.raises(ValueError, match="--init-model model_unet cannot start model_arunet"):
        train(config(photos, tmp_path / "second", model="model_arunet", epochs=1, init=tmp_path / "first" / "weights",
                     init_model="model_unet"))


def test_a_validation_photo_that_is_also_a_training_photo_is_refused(photos, tmp_path) -> None:
    with pytest.raises(ValueError, match="also training images"):
        train(config(photos, tmp_path, val_src=photos / "train"))


def test_a_stop_sent_to_the_whole_process_group_checkpoints_with_a_loader_process(photos, tmp_path) -> None:
    """Ctrl-C or ``kill -- -PGID`` reaches the loader process too: the run must still checkpoint and exit 0."""
    command = [
        sys.executable, "-m", "scripts.training.train", "--model", "model_runet", "--train-src", str(photos / "train"),
        "--val-src", str(photos / "val"), "--noise", "gaussian25", "--width", "8", "--depth", "2", "--crops", "32",
        "--batch", "8", "--epochs", "100", "--epoch-patches", "4000", "--val-patches", "16", "--val-crop", "32",
        "--workers", "1", "--threads", "1", "--precision", "fp32",
        "--run-dir", str(tmp_path / "run"), "--weights-dir", str(tmp_path / "weights"),
    ]
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    output = []
    for line in run.stdout:
        output.append(line)
        if " epoch 1:" in line:
            break
    time.sleep(1)  # into epoch 2 (4,000 patches, several seconds): the stop arrives while the loader works
    os.killpg(run.pid, signal.SIGTERM)
    output += run.stdout.readlines()
    assert run.wait(timeout=60) == 0, "".join(output)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["state"]
    assert state["patches"] % 4000 != 0, "the run was not stopped mid-epoch"
