"""TorchScript graphs of a network as served: channels-last, traced once per precision, frozen.

The fp32 graph computes what the eager network does; the bf16 graph is traced under CPU
autocast, so its convolutions run in bfloat16 (on AVX512-BF16/AMX units where present) while
its input and output stay float32. ``scripts.serving.archives`` packs both into each archive,
with the exported programs a compiled candidate is built from (``models.compiled``), and the
evaluation scores the same graphs.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from . import compiled
from .choice_cache import cached_choice, entry_path, machine_key, writable_cache_dir
from .precision import INT8, TORCHSCRIPT, Graph, PrecisionChoice, challenge, choose_precision, native_int8
from .settings import CHOICE_MARGIN, HandlerSettings

EXAMPLE_SHAPE = (1, 3, HandlerSettings.tile, HandlerSettings.tile)  # one served tile
GRAPH_FILES = {"fp32": "model.pt", "bf16": "model-bf16.pt"}
# Written into each archive beside the graphs: which weights they were traced from.
IDENTITY_FILE = "graphs.json"
# The saved exported program of a precision (a file; None where there is none), for a compiled candidate (models.compiled).
ProgramSource = Callable[[str], Path | None]
# TorchScript's profiling executor optimises a graph after its first calls: make them before serving.
WARM_UP_CALLS = 2


def write_identity(folder: Path, graphs_id: str) -> None:
    """Record in ``folder`` (an archive's contents) what its graphs were traced from."""
    (Path(folder) / IDENTITY_FILE).write_text(json.dumps({"graphs_id": graphs_id}) + "\n")


def read_identity(folder: Path) -> str:
    """What the graphs in ``folder`` (an unpacked archive) were traced from (``write_identity``)."""
    return json.loads((Path(folder) / IDENTITY_FILE).read_text())["graphs_id"]


def trace_graph(model: torch.nn.Module, precision: str) -> torch.jit.ScriptModule:
    """Trace ``model`` in channels-last layout at ``precision`` (``fp32`` or ``bf16``) and freeze it."""
    model = model.eval().to(memory_format=torch.channels_last)
    example = torch.rand(EXAMPLE_SHAPE).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        traced = torch.jit.trace(model, example, check_trace=False)
    return torch.jit.freeze(traced.eval())


def trace_graphs(model: torch.nn.Module) -> dict[str, torch.jit.ScriptModule]:
    """Both served graphs of ``model``, keyed by precision."""
    return {precision: trace_graph(model, precision) for precision in GRAPH_FILES}


def serving_graph(
    graphs: Mapping[str, torch.jit.ScriptModule], settings: HandlerSettings, graphs_id: str,
    device: torch.device = torch.device("cpu"), program: ProgramSource | None = None,
) -> tuple[Graph, PrecisionChoice]:
    """The graph a worker serves with on ``device``, warmed up, and why it was chosen.

    ``graphs_id`` names what the graphs were traced from (``models.registry.graphs_id``). An asked
    precision is taken as it is (``int8``: a package compiled here from the int8 program, else the
    fp32 graph); ``auto`` is decided once per machine on a full tile batch
    (``models.choice_cache``), so every worker, the evaluation and the tests serve the same graph.
    Under ``auto``, ``program(precision)`` gives the saved exported program a compiled candidate is
    built from, in a process of its own (``models.compiled``), where ``settings.compiled`` allows
    it, the device is a CPU and a C++ compiler is present: the chosen precision's and the int8 one
    where there is one and the CPU has int8 instructions, compiled side by side
    (``compile_packages``), then timed in that order. Packages are kept beside the decision.
    """
    batch = torch.rand(settings.tile_batch, 3, settings.tile, settings.tile,
                       generator=torch.Generator().manual_seed(0)).to(device)
    compiler = compiled.cxx_compiler() if settings.compiled == "auto" and program and device.type == "cpu" else None
    int8_program = program(INT8) if program else None
    rule = {"tolerance": settings.bf16_tolerance, "margin": CHOICE_MARGIN, "graphs": sorted(graphs), "device": str(device),
            "compiled": settings.compiled, "compiler": compiler, "int8_program": int8_program is not None}
    key = machine_key(graphs_id, settings.threads, tuple(batch.shape), rule)
    folder = writable_cache_dir()
    package = entry_path(folder, key).with_suffix(".pt2")
    packages: dict[str, Graph] = {}
    served: dict[str, Any] = {}

    def build(precision: str) -> Graph:
        if precision not in packages:
            packages[precision] = package_graph(precision, program, package, tuple(batch.shape))
        return packages[precision]

    def warm_up(choice: PrecisionChoice) -> None:
        try:
            graph = build(choice.precision) if choice.graph == compiled.GRAPH_KIND else graphs[choice.precision]
        except Exception as error:  # noqa: BLE001 - any failure to build or load falls back to TorchScript
            fallback = choice.precision if choice.precision in graphs else "fp32"
            choice = dataclasses.replace(choice, precision=fallback, graph=TORCHSCRIPT,
                                         reason=f"{choice.reason}; the compiled package failed ({error}), so TorchScript {fallback}")
            graph = graphs[fallback]
        with torch.inference_mode():
            for _ in range(WARM_UP_CALLS):
                graph(batch)
        served.update(graph=graph, choice=choice)

    def compiled_challenger(choice: PrecisionChoice, precision: str, failure: Exception | None) -> PrecisionChoice:
        current = packages[choice.precision] if choice.graph == compiled.GRAPH_KIND else graphs[choice.precision]
        try:
            if failure is not None:
                raise failure
            challenger = build(precision)
        except Exception as error:  # noqa: BLE001 - a compiler that fails leaves the current graph served
            return dataclasses.replace(choice, reason=f"{choice.reason}; compiling {precision} failed: {error}")
        return challenge(choice, current, graphs["fp32"], challenger, precision, compiled.GRAPH_KIND,
                         batch, settings.bf16_tolerance, CHOICE_MARGIN)

    def decide() -> PrecisionChoice:
        choice = choose_precision(graphs, settings.precision, batch, settings.bf16_tolerance, CHOICE_MARGIN)
        if compiler is None:
            return choice
        challengers = [choice.precision] + ([INT8] if native_int8(device) and int8_program is not None else [])
        failures = compile_packages(challengers, program, package, tuple(batch.shape))
        for precision in challengers:
            choice = compiled_challenger(choice, precision, failures.get(precision))
        for precision in packages.keys() - {choice.precision if choice.graph == compiled.GRAPH_KIND else None}:
            package_path(package, precision).unlink(missing_ok=True)
        return choice

    if settings.precision == INT8:
        warm_up(PrecisionChoice(INT8, "asked for int8", graph=compiled.GRAPH_KIND))
    elif settings.precision != "auto":
        warm_up(choose_precision(graphs, settings.precision, batch, settings.bf16_tolerance, CHOICE_MARGIN))
    else:
        cached_choice(key, decide, warm_up, folder)
    return served["graph"], served["choice"]


def package_path(package: Path, precision: str) -> Path:
    """Where the compiled package of ``precision`` is kept, ``package`` being its decision's entry with suffix ``.pt2``."""
    return package.with_name(f"{package.stem}-{precision}.pt2")


def compile_packages(
    precisions: list[str], program: ProgramSource | None, package: Path, shape: tuple[int, ...],
) -> dict[str, Exception]:
    """Compile the packages of ``precisions`` not kept yet (``package_path``) at the same time, each in a
    process of its own; returns each failed compile's error by precision.

    A compile keeps about one core busy (inductor's code generation, then one C++ compiler call), so
    the bf16 and int8 packages are compiled side by side, as many at once as the machine has cores.
    Nothing is timed meanwhile: the decision times each package after all are compiled.
    """
    sources = {precision: program(precision) if program else None for precision in precisions
               if not package_path(package, precision).exists()}
    jobs = {precision: source for precision, source in sources.items() if source is not None}
    if not jobs:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
        running = {precision: pool.submit(compiled.compile_apart, source, package_path(package, precision), shape)
                   for precision, source in jobs.items()}
    return {precision: error for precision, done in running.items() if (error := done.exception()) is not None}


def package_graph(precision: str, program: ProgramSource | None, package: Path, shape: tuple[int, ...]) -> Graph:
    """The compiled package of ``precision`` for batches of ``shape`` (``package_path``; compiled from ``program`` first when absent)."""
    path = package_path(package, precision)
    if not path.exists():
        source = program(precision) if program else None
        if source is None:
            raise FileNotFoundError(f"{path.name} is not compiled yet and there is no {precision} program to compile it from")
        compiled.compile_apart(source, path, shape)
    return compiled.load_package(path, shape)
