"""TorchScript graphs of a network as served: channels-last, traced once per precision, frozen.

The fp32 graph computes what the eager network does; the bf16 graph is traced under CPU
autocast, so its convolutions run in bfloat16 (on AVX512-BF16/AMX units where present) while
its input and output stay float32. ``scripts.serving.archives`` packs both into each archive
and the evaluation scores the same graphs.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from .choice_cache import cached_choice, machine_key
from .precision import PrecisionChoice, choose_precision
from .settings import CHOICE_MARGIN, HandlerSettings

EXAMPLE_SHAPE = (1, 3, HandlerSettings.tile, HandlerSettings.tile)  # one served tile
GRAPH_FILES = {"fp32": "model.pt", "bf16": "model-bf16.pt"}
# Written into each archive beside the graphs: which weights they were traced from.
IDENTITY_FILE = "graphs.json"
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
    device: torch.device = torch.device("cpu"),
) -> tuple[torch.jit.ScriptModule, PrecisionChoice]:
    """The graph a worker serves with on ``device``, warmed up, and why it was chosen.

    ``graphs_id`` names what the graphs were traced from (``models.registry.graphs_id``). An asked
    precision is taken as it is; ``auto`` is decided once per machine on a full tile batch
    (``models.choice_cache``), so every worker, the evaluation and the tests serve the same graph.
    """
    batch = torch.rand(settings.tile_batch, 3, settings.tile, settings.tile,
                       generator=torch.Generator().manual_seed(0)).to(device)

    def decide() -> PrecisionChoice:
        return choose_precision(graphs, settings.precision, batch, settings.bf16_tolerance, CHOICE_MARGIN)

    def warm_up(choice: PrecisionChoice) -> None:
        with torch.inference_mode():
            for _ in range(WARM_UP_CALLS):
                graphs[choice.precision](batch)

    if settings.precision != "auto":
        choice = decide()
        warm_up(choice)
        return graphs[choice.precision], choice
    rule = {"tolerance": settings.bf16_tolerance, "margin": CHOICE_MARGIN, "graphs": sorted(graphs), "device": str(device)}
    key = machine_key(graphs_id, settings.threads, tuple(batch.shape), rule)
    choice, _ = cached_choice(key, decide, warm_up)
    return graphs[choice.precision], choice
