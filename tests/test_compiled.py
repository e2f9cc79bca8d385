"""Compiled graphs: exported programs of the served shape, packages compiled here, partial batches padded."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.compiled import (
    PROGRAM_FILES,
    Autocast,
    PaddedGraph,
    compile_apart,
    compile_package,
    cxx_compiler,
    export_program,
    input_shape,
    load_package,
    save_program,
    save_programs,
)
from tests.networks import random_network

SHAPE = (4, 3, 32, 32)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return random_network("model_arunet", width=4, depth=2)


def test_a_partial_batch_is_padded_to_the_compiled_one_and_cut_back() -> None:
    seen = []

    def runner(tiles: torch.Tensor) -> torch.Tensor:
        seen.append(tiles.shape[0])
        return tiles * 2 + 1

    graph = PaddedGraph(runner, SHAPE)
    tiles = torch.rand(3, *SHAPE[1:])
    assert torch.equal(graph(tiles), tiles * 2 + 1)
    assert graph(torch.rand(SHAPE)).shape == SHAPE
    assert seen == [4, 4]


@pytest.mark.parametrize("shape", [(5, 3, 32, 32), (2, 3, 16, 32), (2, 1, 32, 32), (0, 3, 32, 32)])
def test_tiles_the_package_was_not_compiled_for_are_refused(shape: tuple[int, ...]) -> None:
    graph = PaddedGraph(lambda tiles: tiles, SHAPE)
    with pytest.raises(ValueError, match="takes 1 to 4 tiles"):
        graph(torch.rand(shape))


def test_programs_are_exported_per_precision_for_the_served_batch(net: torch.nn.Module, tmp_path: Path) -> None:
    paths = save_programs(net, tmp_path, SHAPE)
    assert {precision: path.name for precision, path in paths.items()} == {key: PROGRAM_FILES[key] for key in ("fp32", "bf16")}
    x = torch.rand(SHAPE)
    with torch.inference_mode():
        eager, autocast = net(x), Autocast(net)(x)
        programs = {precision: torch.export.load(str(path)) for precision, path in paths.items()}
        assert all(input_shape(program) == SHAPE for program in programs.values())
        assert torch.allclose(programs["fp32"].module()(x), eager, atol=1e-5)
        assert torch.allclose(programs["bf16"].module()(x), autocast, atol=1e-3)
        assert not torch.allclose(autocast, eager, atol=1e-6)


def test_a_program_of_another_shape_is_not_compiled(net: torch.nn.Module, tmp_path: Path) -> None:
    program = export_program(net, "fp32", (2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"exported for batches of \(2, 3, 32, 32\)"):
        compile_package(program, tmp_path / "p.pt2", SHAPE)
    assert not list(tmp_path.iterdir())


def test_a_program_exported_for_another_memory_layout_is_not_compiled(net: torch.nn.Module, tmp_path: Path) -> None:
    """A package reads its input as laid out when it was exported; it is called with contiguous batches."""
    with torch.no_grad():
        program = torch.export.export(net, (torch.rand(SHAPE).contiguous(memory_format=torch.channels_last),))
    with pytest.raises(ValueError, match="another memory layout"):
        compile_package(program, tmp_path / "p.pt2", SHAPE)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_compiler_process_that_fails_says_why(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="compiling missing.pt2 failed: .*No such file"):
        compile_apart(tmp_path / "missing.pt2", tmp_path / "p.pt2", SHAPE)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.skipif(cxx_compiler() is None, reason="no C++ compiler: AOTInductor cannot compile here")
def test_a_package_compiled_in_its_own_process_computes_what_the_network_does(net: torch.nn.Module, tmp_path: Path) -> None:
    """The bf16 program, under autocast. (fp32 packages are compiled and checked against TorchScript
    by tests/test_benchmark.py's compiled section, and tests/test_server.py compiles each machine's
    served precision in the workers.)"""
    folder = tmp_path / "programs"
    folder.mkdir()
    path = compile_apart(save_program(net, "bf16", folder, SHAPE), tmp_path / "bf16.pt2", SHAPE)
    assert sorted(item.name for item in tmp_path.iterdir()) == [path.name, "programs"]
    graph = load_package(path, SHAPE)
    with torch.inference_mode():
        for count in (4, 3, 1):
            x = torch.rand(count, *SHAPE[1:])
            assert torch.allclose(graph(x), Autocast(net)(x), atol=2e-2), count
