"""Ahead-of-time compiled graphs (AOTInductor), built on the machine that serves them.

An archive carries, beside its TorchScript graphs, each precision's *exported program*
(``torch.export``): the network's operations and weights, free of any instruction set. Inductor
generates code for the CPU it compiles on (``-march=native``), so a compiled package is never
moved between machines: a worker compiles the program of the precision its TorchScript timing
chose into a package in the choice cache folder (``models.choice_cache``), times the two, and
serves the package only where it is clearly faster (``models.graphs.serving_graph``). Compiling
needs a C++ compiler; without one the candidate is skipped and the reason logged.

An int8 program (made by ``scripts.training.quantize``, found by ``models.quantized``) is compiled
the same way, with its weights frozen into the package: inductor then folds each quantised weight
into oneDNN's int8 convolution.

A package is compiled for one batch shape, the full tile batch: ``PaddedGraph`` pads a smaller
last batch to it with zeros and drops the padded rows' output. (A package exported with a dynamic
batch computes the largest batch whatever it is given, at the same cost.)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from .precision import SERVED_PRECISIONS, Graph

# The archive's exported programs, per precision (models.graphs.GRAPH_FILES are the TorchScript graphs):
# every archive has the float ones (save_programs), the int8 one only where it was kept (models.quantized).
PROGRAM_FILES = {"fp32": "program.pt2", "bf16": "program-bf16.pt2", "int8": "program-int8.pt2"}
GRAPH_KIND = "aoti"
# A worker gives up on compiling after this long and serves TorchScript. A compile takes tens of
# seconds on 2 cores, longer with inductor's cache empty (docs/performance.md, "Compiled graphs");
# the workers compile one after another under the decision's lock, and TorchServe stops a worker
# that is not loaded after the model's startupTimeout (models/settings.py).
COMPILE_TIMEOUT_S = 120.0


class Autocast(torch.nn.Module):
    """``net`` run under CPU bf16 autocast, float32 in and out: what the bf16 graphs compute, as a module to export."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.net(x).float()


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would call (``$CXX``, else ``g++``), or ``None`` where there is none."""
    return shutil.which(os.environ.get("CXX") or "g++")


def export_program(net: torch.nn.Module, precision: str, batch_shape: tuple[int, ...]) -> torch.export.ExportedProgram:
    """``net`` (eval mode, channels-last weights) exported at ``precision`` for batches of ``batch_shape``."""
    net = net.eval().to(memory_format=torch.channels_last)
    module = Autocast(net) if precision == "bf16" else net
    with torch.no_grad():
        program = torch.export.export(module, (torch.rand(batch_shape),))
    return without_example(program)


def without_example(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``program`` without its example input (a full tile batch of random numbers: megabytes not worth saving)."""
    program.example_inputs = None
    return program


def save_program(net: torch.nn.Module, precision: str, folder: Path, batch_shape: tuple[int, ...]) -> Path:
    """Export ``net`` at ``precision`` into ``folder`` as its ``PROGRAM_FILES`` file; returns the path."""
    path = Path(folder) / PROGRAM_FILES[precision]
    torch.export.save(export_program(net, precision, batch_shape), str(path))
    return path


def save_programs(net: torch.nn.Module, folder: Path, batch_shape: tuple[int, ...]) -> dict[str, Path]:
    """Export ``net`` at each float precision (``fp32``, ``bf16``) into ``folder`` (``save_program``); returns the paths."""
    return {precision: save_program(net, precision, folder, batch_shape) for precision in SERVED_PRECISIONS}


def input_example(program: torch.export.ExportedProgram) -> torch.Tensor:
    """The (fake) batch ``program`` was exported for: its shape and memory layout."""
    name = program.graph_signature.user_inputs[0]
    return next(node for node in program.graph.nodes if node.name == name).meta["val"]


def input_shape(program: torch.export.ExportedProgram) -> tuple[int, ...]:
    """The shape of the batch ``program`` was exported for."""
    return tuple(input_example(program).shape)


class PaddedGraph:
    """A compiled package for batches of ``shape``, called with any batch of 1 to ``shape[0]`` such tiles.

    The package itself checks nothing (AOTInductor reads its input as laid out at compile time),
    so the tiles' shape is checked here.
    """

    def __init__(self, runner: Graph, shape: tuple[int, ...]) -> None:
        self.runner = runner
        self.shape = tuple(shape)

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        count, batch = tiles.shape[0], self.shape[0]
        if not 0 < count <= batch or tuple(tiles.shape[1:]) != self.shape[1:]:
            raise ValueError(f"the compiled graph takes 1 to {batch} tiles of {self.shape[1:]}, not {tuple(tiles.shape)}")
        if count < batch:
            tiles = torch.cat([tiles, tiles.new_zeros(batch - count, *tiles.shape[1:])])
        return self.runner(tiles.float().contiguous())[:count]


def register_quantized_ops() -> None:
    """Make PyTorch know the quantize/dequantize operators an int8 program calls (needed before loading one)."""
    import torch.ao.quantization.fx._decomposed  # noqa: F401 - registers torch.ops.quantized_decomposed


def is_quantized(program: torch.export.ExportedProgram) -> bool:
    """Whether ``program`` quantises its activations (an int8 program, ``models.quantized``)."""
    return any(node.op == "call_function" and str(node.target).startswith("quantized_decomposed.")
               for node in program.graph.nodes)


def compile_package(program: torch.export.ExportedProgram, path: Path, shape: tuple[int, ...]) -> Path:
    """Compile ``program`` for this CPU into the AOTInductor package ``path`` (written whole, then renamed).

    An int8 program is compiled with frozen weights. Compiling runs without autograd, for a graph
    that only ever serves, as the benchmark compiles the packages it times (with autograd on the
    int8 packages came out slower). Raises ``ValueError`` unless the program was exported for
    batches of ``shape``.
    """
    import torch._inductor as inductor
    from torch._inductor import config as inductor_config

    if input_shape(program) != tuple(shape):
        raise ValueError(f"the program was exported for batches of {input_shape(program)}, not {tuple(shape)}")
    if not input_example(program).is_contiguous():
        raise ValueError("the program was exported for a batch in another memory layout than the contiguous one it is called with")
    path = Path(path)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.pt2")
    program.example_inputs = ((torch.zeros(shape),), {})  # AOTInductor wants one; only its shape matters
    with inductor_config.patch(freezing=is_quantized(program)), torch.no_grad():
        inductor.aoti_compile_and_package(program, package_path=str(partial))
    os.replace(partial, path)
    return path


def compile_apart(program: Path, path: Path, shape: tuple[int, ...], timeout_s: float = COMPILE_TIMEOUT_S) -> Path:
    """``compile_package`` of the saved program file ``program``, in a process of its own.

    A worker compiles this way so that the compiler's memory (inductor's code generation holds
    hundreds of MiB it never gives back) and any crash stay out of the serving process. Raises
    ``RuntimeError`` with the compiler's last words when it fails.
    """
    command = [sys.executable, "-m", "models.compiled", str(program), str(path), *map(str, shape)]
    done = subprocess.run(command, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
                          timeout=timeout_s)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"compiling {Path(program).name} failed: {last}")
    return Path(path)


def load_package(path: Path, shape: tuple[int, ...]) -> PaddedGraph:
    """The compiled package at ``path`` (compiled for batches of ``shape``) as a graph taking up to ``shape[0]`` tiles."""
    import torch._inductor as inductor

    return PaddedGraph(inductor.aoti_load_package(str(path)), shape)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.compiled PROGRAM PACKAGE N C H W``: compile a saved program for batches of N x C x H x W."""
    program, package, *shape = sys.argv[1:] if argv is None else argv
    register_quantized_ops()
    compile_package(torch.export.load(program), Path(package), tuple(int(size) for size in shape))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
