"""int8 programs: a network quantised after training (PT2E, x86 int8 kernels), compiled like the other programs.

``quantize`` exports a network for the full tile batch, observes its activations on calibration
batches and converts it into an *exported program* whose convolutions take uint8 activations
and per-channel int8 weights (torchao's ``X86InductorQuantizer``, the layout oneDNN's VNNI and
AMX int8 kernels compute). The layers named by ``kept_float`` stay in float32: for these
networks the blocks at the image's full resolution (the first encoder, the last decoder and the
1x1 head that writes the noise estimate) carry nearly all of int8's loss
(``scripts.training.quantize --sensitivity``; docs/training.md, "int8 programs"). Quantising needs
``torchao`` (a development tool, ``scripts.training.quantize``); loading and compiling the
saved program needs only PyTorch (``models.compiled.register_quantized_ops``), and inductor compiles it with
frozen weights, without which its int8 kernels are not used.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

from .blocks import UNetSkeleton
from .compiled import without_example

# The weights folder keeps a model's int8 program as <model>-int8.pt2 with its record
# <model>-int8.json (``program_paths``); the benchmark times the ones ``kept_program`` allows.
# An int8 program is a candidate only if it loses at most this much PSNR to fp32 on val, per preset.
MAX_LOSS_DB = 0.05
GATE_PRESETS = ("hybrid", "gaussian25")


def program_paths(name: str, weights_dir: Path) -> tuple[Path, Path]:
    """The int8 program of model ``name`` in ``weights_dir`` and the JSON record of how it was made and scored."""
    return Path(weights_dir) / f"{name}-int8.pt2", Path(weights_dir) / f"{name}-int8.json"


def kept_program(name: str, weights_dir: Path, weights_id: str) -> tuple[Path | None, str]:
    """The int8 program of ``name`` in ``weights_dir`` if it is a candidate, and why (``None`` and why not).

    A candidate was made from exactly the weights ``weights_id`` names (``models.registry.graphs_id``)
    and lost at most ``MAX_LOSS_DB`` on val, as its record says (``scripts.training.quantize``).
    """
    program, record_file = program_paths(name, weights_dir)
    if not record_file.exists():
        return None, "no int8 program (python -m scripts.training.quantize makes one)"
    record = json.loads(record_file.read_text())
    if record.get("weights") != weights_id:
        return None, "the int8 program was made from other weights (python -m scripts.training.quantize again)"
    if not record.get("candidate") or not program.exists():
        return None, f"int8 loses {record.get('max_loss_db')} dB on val, more than {record.get('limit_db')}"
    return program, f"int8 loses {record['max_loss_db']} dB on val (limit {record['limit_db']})"


def layer_groups(net: UNetSkeleton) -> list[str]:
    """The network's blocks in data order (encoders, bottleneck, decoders, head): the units of ``--sensitivity``."""
    return [*(f"encoders.{i}" for i in range(len(net.encoders))), "bottleneck",
            *(f"decoders.{i}" for i in range(len(net.decoders))), "head"]


def full_resolution_blocks(net: UNetSkeleton) -> list[str]:
    """Names of the blocks kept in float32: the first encoder, the last decoder and the head, which work at full resolution."""
    return ["encoders.0", f"decoders.{len(net.decoders) - 1}", "head"]


def quantize(net: torch.nn.Module, calibration: Iterable[torch.Tensor], kept_float: Iterable[str] = (),
             only: Iterable[str] | None = None) -> torch.export.ExportedProgram:
    """``net`` quantised to int8 on ``calibration`` batches (each of the shape it is exported for), as an exported program.

    Weights get per-channel scales, activations per-tensor scales from histograms of what the
    calibration batches produce; the modules named in ``kept_float`` are left in float32, and
    with ``only`` given, everything but the modules it names. Needs ``torchao``.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    batches = (batch.contiguous() for batch in calibration)  # the layout a package is called with (models.compiled)
    first = next(batches)
    net = net.eval().to(memory_format=torch.channels_last)
    config = x86.get_default_x86_inductor_quantization_config()
    quantizer = x86.X86InductorQuantizer()
    if only is None:
        quantizer.set_global(config)
    for name in only or ():
        quantizer.set_module_name_qconfig(name, config)
    for name in kept_float:
        quantizer.set_module_name_qconfig(name, None)
    with torch.no_grad():
        prepared = prepare_pt2e(torch.export.export(net, (first,)).module(), quantizer)
        for batch in (first, *batches):
            prepared(batch)
        converted = drop_unused_tensors(convert_pt2e(prepared))
        return without_example(torch.export.export(converted, (first,)))


def drop_unused_tensors(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``module`` without the parameters and buffers its graph no longer reads (the float weights of quantised layers)."""
    used = {node.target for node in module.graph.nodes if node.op == "get_attr"}
    for name, _ in [*module.named_parameters(), *module.named_buffers()]:
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            delattr(module.get_submodule(owner), leaf)
    return module

