"""The quantisation tool: scores int8 against fp32 on val crops and writes a program only within the gate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.compiled import register_quantized_ops
from models.degradations import PRESETS
from models.quantized import GATE_PRESETS, kept_program, program_paths
from models.registry import graphs_id
from scripts.training import quantize as tool
from scripts.training.dataset import fixed_pairs, usable_images
from tests.networks import saved_random_networks
from tests.photos import synthetic_folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("quantize")
    synthetic_folder(root / "train", 3, (160, 160), seed=1)
    synthetic_folder(root / "val", 2, (160, 160), seed=50)
    weights = saved_random_networks(root / "weights", ["model_unet"], width=4, depth=2)
    images = usable_images(root / "val", tool.TILE)
    val = {preset: fixed_pairs(images, tool.TILE, tool.BATCH, PRESETS[preset], seed=1) for preset in GATE_PRESETS}
    return root, weights, val


@pytest.mark.slow
@pytest.mark.parametrize("limit", [100.0, -100.0])
def test_a_program_is_written_only_within_the_gate_and_its_record_says_why(
    setup: tuple[Path, Path, dict], monkeypatch: pytest.MonkeyPatch, limit: float,
) -> None:
    root, weights, val = setup
    monkeypatch.setattr(tool, "MAX_LOSS_DB", limit)
    record = tool.quantize_model("model_unet", weights, root / "train", val, crops=16, seed=0)
    program, record_file = program_paths("model_unet", weights)
    assert json.loads(record_file.read_text()) == record
    assert record["weights"] == graphs_id("model_unet", weights) and record["limit_db"] == limit
    assert record["kept_float"] == ["encoders.0", "decoders.1", "head"] and record["val_crops"] == tool.BATCH
    assert set(record["val"]) == set(GATE_PRESETS)
    loss = max(score["fp32"] - score["int8"] for score in record["val"].values())
    assert record["max_loss_db"] == pytest.approx(loss, abs=1e-3) and record["candidate"] == (limit > 0)
    assert program.exists() == (limit > 0)
    assert (kept_program("model_unet", weights, graphs_id("model_unet", weights))[0] is not None) == (limit > 0)
    if program.exists():
        register_quantized_ops()
        assert tuple(torch.export.load(str(program)).module()(torch.rand(tool.BATCH, 3, tool.TILE, tool.TILE)).shape) == (
            tool.BATCH, 3, tool.TILE, tool.TILE)


@pytest.mark.slow
def test_the_sensitivity_table_quantises_each_group_alone_then_all_then_all_but_the_full_resolution_blocks(
    setup: tuple[Path, Path, dict], capsys: pytest.CaptureFixture,
) -> None:
    root, weights, val = setup
    rows = tool.sensitivity("model_unet", weights, root / "train", val, crops=16, seed=0)
    assert [row["quantised"] for row in rows] == [
        "only encoders.0", "only encoders.1", "only bottleneck", "only decoders.0", "only decoders.1", "only head",
        "all", "all but encoders.0, decoders.1, head"]
    assert all(set(row) == {"quantised", *GATE_PRESETS} for row in rows)
    assert len({row["hybrid"] for row in rows}) > 1
    assert capsys.readouterr().out.count("\n| only ") == 5


def test_validation_crops_must_fill_whole_tile_batches(setup: tuple[Path, Path, dict], capsys: pytest.CaptureFixture) -> None:
    root, weights, _ = setup
    with pytest.raises(SystemExit):
        tool.main(["--models", "model_unet", "--weights-dir", str(weights), "--train-src", str(root / "train"),
                   "--val-src", str(root / "val"), "--val-crops", "20"])
    assert "--val-crops must be a multiple of 16" in capsys.readouterr().err
