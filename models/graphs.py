"""TorchScript graphs of a network as served: channels-last, traced once per precision, frozen.

The fp32 graph computes what the eager network does; the bf16 graph is traced under CPU
autocast, so its convolutions run in bfloat16 (on AVX512-BF16/AMX units where present) while
its input and output stay float32. ``scripts.build_model_store`` packs both into each archive
and the evaluation scores the same graphs.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .precision import PrecisionChoice, choose_precision
from .settings import HandlerSettings

EXAMPLE_SHAPE = (1, 3, HandlerSettings.tile, HandlerSettings.tile)  # one served tile
GRAPH_FILES = {"fp32": "model.pt", "bf16": "model-bf16.pt"}
# TorchScript's profiling executor optimises a graph after its first calls: make them before serving.
WARM_UP_CALLS = 2


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
    graphs: Mapping[str, torch.jit.ScriptModule], settings: HandlerSettings, device: torch.device = torch.device("cpu")
) -> tuple[torch.jit.ScriptModule, PrecisionChoice]:
    """The graph a worker serves with on ``device``: chosen on a full tile batch (``choose_precision``), then warmed up."""
    warm_up = torch.rand(settings.tile_batch, 3, settings.tile, settings.tile, device=device)
    choice = choose_precision(graphs, settings.precision, warm_up, settings.bf16_tolerance)
    graph = graphs[choice.precision]
    with torch.inference_mode():
        for _ in range(WARM_UP_CALLS):
            graph(warm_up)
    return graph, choice
