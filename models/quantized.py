"""int8 programs: which one a model's weights have, and whether it is a candidate of the serving decision.

``scripts.training.quantize`` quantises a trained network after training (torchao's PT2E flow,
x86 int8 kernels; a development tool) and saves the *exported program* beside the weights with a
JSON record of how it was made and scored. This module reads that record: the archive packs a
program only where ``kept_program`` allows it, and a worker compiles it like the other programs
(``models.compiled``, with frozen weights, without which its int8 kernels are not used). Loading
and compiling need only PyTorch (``models.compiled.register_quantized_ops``).
"""
from __future__ import annotations

import json
from pathlib import Path

# The weights folder keeps a model's int8 program as <model>-int8.pt2 with its record
# <model>-int8.json (``program_paths``); the archive packs and the benchmark times the ones ``kept_program`` allows.
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
