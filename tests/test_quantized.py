"""int8 programs: quantised where it is cheap, loaded and compiled with PyTorch alone, kept only within the gate."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import MODELS, WEIGHTS_DIR, build_model
from models.compiled import compile_apart, cxx_compiler, input_shape, is_quantized, load_package, register_quantized_ops
from models.quantized import GATE_PRESETS, MAX_LOSS_DB, full_resolution_blocks, kept_program, layer_groups, program_paths, quantize
from models.registry import graphs_id
from scripts.paths import REPO
from tests.networks import random_network

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


@pytest.fixture(scope="module")
def program_file(net: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("int8") / "int8.pt2"
    torch.export.save(quantize(net, calibration(), full_resolution_blocks(net)), str(path))
    return path


@pytest.mark.parametrize("name", list(MODELS))
def test_the_blocks_kept_in_float_are_the_first_encoder_the_last_decoder_and_the_head(name: str) -> None:
    for config in ({}, {"width": 4, "depth": 2}):
        net = build_model(name, **config)
        modules = dict(net.named_modules())
        assert [modules[block] for block in full_resolution_blocks(net)] == [net.encoders[0], net.decoders[-1], net.head]


def test_a_quantised_program_computes_near_the_network_and_keeps_its_full_resolution_blocks_in_float(net: torch.nn.Module) -> None:
    program = quantize(net, calibration(), full_resolution_blocks(net))
    assert is_quantized(program) and input_shape(program) == SHAPE
    x = torch.rand(SHAPE)
    with torch.inference_mode():
        eager, int8 = net(x), program.module()(x)
    error = float((int8 - eager).abs().max())
    assert 0 < error < 0.1 * float(eager.abs().max())
    layers = int8_layers(program)
    assert layers and not any(layer.startswith(tuple(full_resolution_blocks(net))) for layer in layers)
    assert {"encoders.0.body.0", "decoders.1.body.0", "head"} <= float_layers(program)
    assert not is_quantized(torch.export.export(net, (x,)))


def test_only_the_named_groups_are_quantised_when_asked(net: torch.nn.Module) -> None:
    groups = layer_groups(net)
    assert groups == ["encoders.0", "encoders.1", "bottleneck", "decoders.0", "decoders.1", "head"]
    program = quantize(net, calibration(1), only=["encoders.1"])
    assert int8_layers(program) == {"encoders.1.body.0", "encoders.1.body.2", "encoders.1.shortcut"}


def test_a_saved_program_loads_with_pytorch_alone(program_file: Path, net: torch.nn.Module) -> None:
    """The serving side never imports torchao: a process that cannot import it still loads and runs the program."""
    script = (
        "import sys, torch; sys.modules['torchao'] = None\n"
        "from models.compiled import register_quantized_ops; register_quantized_ops()\n"
        f"program = torch.export.load({str(program_file)!r})\n"
        f"torch.save(program.module()(torch.ones({SHAPE})), {str(program_file.with_suffix('.out'))!r})\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, capture_output=True)
    register_quantized_ops()
    with torch.inference_mode():
        expected = torch.export.load(str(program_file)).module()(torch.ones(SHAPE))
    answer = program_file.with_suffix(".out")
    assert torch.equal(torch.load(answer, weights_only=True), expected)


@pytest.mark.slow
@pytest.mark.skipif(cxx_compiler() is None, reason="no C++ compiler: AOTInductor cannot compile here")
def test_a_compiled_int8_package_computes_what_its_program_does(program_file: Path, tmp_path: Path) -> None:
    graph = load_package(compile_apart(program_file, tmp_path / "int8-package.pt2", SHAPE), SHAPE)
    register_quantized_ops()
    reference = torch.export.load(str(program_file)).module()
    with torch.inference_mode():
        x = torch.rand(SHAPE)
        expected = reference(x)
        assert float((graph(x) - expected).abs().max()) < 0.02
        assert float((graph(x[:2]) - expected[:2]).abs().max()) < 0.02


def record(folder: Path, **fields: object) -> None:
    program, record_file = program_paths("model_unet", folder)
    program.write_bytes(b"program")
    record_file.write_text(json.dumps({"weights": "model_unet:abc", "candidate": True, "max_loss_db": 0.01,
                                       "limit_db": 0.05, **fields}))


@pytest.mark.parametrize(("fields", "why"), [
    ({"weights": "model_unet:other"}, "made from other weights"),
    ({"candidate": False, "max_loss_db": 0.2}, "loses 0.2 dB on val, more than 0.05"),
])
def test_a_program_of_other_weights_or_over_the_limit_is_no_candidate(tmp_path: Path, fields: dict, why: str) -> None:
    assert kept_program("model_unet", tmp_path, "model_unet:abc") == (None, "no int8 program (python -m scripts.training.quantize makes one)")
    record(tmp_path, **fields)
    program, reason = kept_program("model_unet", tmp_path, "model_unet:abc")
    assert program is None and why in reason
    record(tmp_path)
    assert kept_program("model_unet", tmp_path, "model_unet:abc")[0] == program_paths("model_unet", tmp_path)[0]



@pytest.mark.parametrize("name", list(MODELS))
def test_a_committed_int8_record_names_the_committed_weights_and_keeps_only_within_the_gate(name: str) -> None:
    """Retrained weights need quantising again (python -m scripts.training.quantize): a stale record fails here."""
    program, record_file = program_paths(name, WEIGHTS_DIR)
    if not record_file.exists():
        pytest.skip(f"no int8 record for {name}")
    record = json.loads(record_file.read_text())
    assert record["weights"] == graphs_id(name, WEIGHTS_DIR)
    assert record["limit_db"] == MAX_LOSS_DB and record["candidate"] == (record["max_loss_db"] <= MAX_LOSS_DB) == program.exists()
    assert set(record["val"]) == set(GATE_PRESETS)
