"""The quantisation tool: quantised where it is cheap, scored against fp32 on val crops, a program written only within the gate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models import MODELS, build_model
from models.compiled import input_shape, is_quantized, register_quantized_ops
from models.degradations import PRESETS
from models.quantized import GATE_PRESETS, kept_program, program_paths
from models.registry import graphs_id
from scripts.training import quantize as tool
from scripts.training.dataset import fixed_pairs, usable_images
from tests.networks import random_network, saved_random_networks
from tests.photos import synthetic_folder

SHAPE = (4, 3, 32, 32)


def calibration(count: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(SHAPE, generator=generator) for _ in range(count)]


def conv_layers(program: torch.export.ExportedProgram) -> dict[str, bool]:
    """Each convolution's module path and whether its weight comes dequantised from int8."""
    layers = {}
    for node in program.graph.nodes:
        if node.op == "call_function" and str(node.target).startswith("aten.conv"):
            path = list(node.meta["nn_module_stack"].values())[-1][0]
            layers[path] = isinstance(node.args[1], torch.fx.Node) and "dequantize" in str(node.args[1].target)
    return layers


def int8_layers(program: torch.export.ExportedProgram) -> set[str]:
    return {layer for layer, int8 in conv_layers(program).items() if int8}


def float_layers(program: torch.export.ExportedProgram) -> set[str]:
    return {layer for layer, int8 in conv_layers(program).items() if not int8}


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return random_network("model_runet", width=8, depth=2)


@pytest.mark.parametrize("name", list(MODELS))
def test_the_blocks_kept_in_float_are_the_first_encoder_the_last_decoder_and_the_head(name: str) -> None:
    for config in ({}, {"width": 4, "depth": 2}):
        net = build_model(name, **config)
        modules = dict(net.named_modules())
        assert [modules[block] for block in tool.full_resolution_blocks(net)] == [net.encoders[0], net.decoders[-1], net.head]


def test_a_quantised_program_computes_near_the_network_and_keeps_its_full_resolution_blocks_in_float(net: torch.nn.Module) -> None:
    program = tool.quantize(net, calibration(), tool.full_resolution_blocks(net))
    assert is_quantized(program) and input_shape(program) == SHAPE
    x = torch.rand(SHAPE)
    with torch.inference_mode():
        eager, int8 = net(x), program.module()(x)
    error = float((int8 - eager).abs().max())
    assert 0 < error < 0.1 * float(eager.abs().max())
    layers = int8_layers(program)
    assert layers and not any(layer.startswith(tuple(tool.full_resolution_blocks(net))) for layer in layers)
    assert {"encoders.0.body.0", "decoders.1.body.0", "head"} <= float_layers(program)
    assert not is_quantized(torch.export.export(net, (x,)))


def test_only_the_named_groups_are_quantised_when_asked(net: torch.nn.Module) -> None:
    groups = tool.layer_groups(net)
    assert groups == ["encoders.0", "encoders.1", "bottleneck", "decoders.0", "decoders.1", "head"]
    program = tool.quantize(net, calibration(1), only=["encoders.1"])
    assert int8_layers(program) == {"encoders.1.body.0", "encoders.1.body.2", "encoders.1.shortcut"}


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
