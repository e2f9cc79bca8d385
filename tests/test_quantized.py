"""int8 programs: loaded and compiled with PyTorch alone, a candidate only for the weights they were made from and within the gate."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import MODELS, WEIGHTS_DIR
from models.compiled import compile_apart, cxx_compiler, load_package, register_quantized_ops
from models.quantized import GATE_PRESETS, MAX_LOSS_DB, kept_program, program_paths
from models.registry import graphs_id
from scripts.paths import REPO
from scripts.training.quantize import full_resolution_blocks, quantize
from tests.networks import random_network

SHAPE = (4, 3, 32, 32)


def calibration(count: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(SHAPE, generator=generator) for _ in range(count)]


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return random_network("model_runet", width=8, depth=2)


@pytest.fixture(scope="module")
def program_file(net: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("int8") / "int8.pt2"
    torch.export.save(quantize(net, calibration(), full_resolution_blocks(net)), str(path))
    return path


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
