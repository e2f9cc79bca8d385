"""Quantise the trained networks to int8 programs and keep those within the quality gate.

    python -m scripts.training.quantize                       # every model, weights in models/weights
    python -m scripts.training.quantize --models model_unet --calibration 512
    python -m scripts.training.quantize --models model_unet --sensitivity --calibration 128   # which layers cost

For each model: calibrate on crops of the training photos under the blind mixture (the noise the
networks were trained on), quantise (``quantize``: torchao's PT2E flow with ``X86InductorQuantizer``,
per-channel int8 weights and uint8 activations, the layout oneDNN's VNNI and AMX int8 kernels
compute; the blocks at full resolution, ``full_resolution_blocks``, stay in float32 because they
carry nearly all of int8's loss), then score the fp32 network and the
int8 program on the same fixed validation crops under each preset of
``models.quantized.GATE_PRESETS``. ``<model>-int8.json`` beside the weights records the scores,
what was kept in float and which weights it was made from; ``<model>-int8.pt2`` is written only
when int8 loses at most ``MAX_LOSS_DB`` on every preset; ``models.quantized.kept_program`` takes a
program only when its record says so and names the weights it is asked for (the benchmark's
``compiled`` section times those).
``--sensitivity`` prints, instead, each layer group's loss quantised alone (the rest in float),
everything's, and everything's but the full-resolution blocks': how
``full_resolution_blocks`` was chosen.
"""
from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from models import MODELS, WEIGHTS_DIR
from models.blocks import UNetSkeleton
from models.compiled import without_example
from models.degradations import PRESETS, BlindNoiseConfig
from models.precision import cpu_name
from models.quantized import GATE_PRESETS, MAX_LOSS_DB, program_paths
from models.registry import graphs_id, load_pretrained
from models.settings import HandlerSettings
from scripts.evaluation.metrics import psnr
from scripts.paths import split_argument
from scripts.training.dataset import DegradedCrops, fixed_pairs, usable_images
from scripts.training.train import to_batch

TILE, BATCH = HandlerSettings.tile, HandlerSettings.tile_batch
Pairs = tuple[torch.Tensor, torch.Tensor]


CPU = torch.device("cpu")


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


def calibration_batches(train_src: Path, crops: int, seed: int) -> Iterator[torch.Tensor]:
    """``crops`` noisy training crops (blind mixture, seeded) in full tile batches."""
    stream = iter(DegradedCrops(usable_images(train_src, TILE), TILE, BATCH, BlindNoiseConfig(), seed=seed))
    for _ in range(max(1, crops // BATCH)):
        yield to_batch(next(stream)[0], CPU)


@torch.inference_mode()
def mean_psnr(graph: Callable[[torch.Tensor], torch.Tensor], pairs: Pairs) -> float:
    """Mean per-crop PSNR of ``graph`` over ``pairs`` (a multiple of the tile batch), in dB."""
    scores = []
    for first in range(0, len(pairs[0]), BATCH):
        noisy, clean = (to_batch(t[first:first + BATCH], CPU) for t in pairs)
        out = graph(noisy).clamp(0, 1)
        scores += [psnr(c, o, data_range=1.0) for c, o in zip(clean.numpy(), out.numpy())]
    return float(np.mean(scores))


def quantize_model(name: str, weights_dir: Path, train_src: Path, val: dict[str, Pairs], crops: int, seed: int) -> dict:
    """Quantise ``name``, score it against fp32 on ``val`` and write its record (and program, if it passes)."""
    net = load_pretrained(name, weights_dir).to(memory_format=torch.channels_last)
    kept_float = full_resolution_blocks(net)
    program = quantize(net, calibration_batches(train_src, crops, seed), kept_float)
    scores = {preset: {"fp32": mean_psnr(net, pairs), "int8": mean_psnr(program.module(), pairs)} for preset, pairs in val.items()}
    loss = max(score["fp32"] - score["int8"] for score in scores.values())
    record = {
        "weights": graphs_id(name, weights_dir), "kept_float": kept_float, "candidate": loss <= MAX_LOSS_DB,
        "max_loss_db": round(loss, 4), "limit_db": MAX_LOSS_DB,
        "val": {preset: {k: round(v, 4) for k, v in score.items()} for preset, score in scores.items()},
        "val_crops": len(next(iter(val.values()))[0]), "calibration_crops": crops, "seed": seed,
        "torch": torch.__version__, "cpu": cpu_name(), "date": datetime.date.today().isoformat(),
    }
    program_file, record_file = program_paths(name, weights_dir)
    program_file.unlink(missing_ok=True)
    if record["candidate"]:
        torch.export.save(program, str(program_file))
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    return record


def sensitivity(name: str, weights_dir: Path, train_src: Path, val: dict[str, Pairs], crops: int, seed: int) -> list[dict]:
    """PSNR lost to int8 on ``val`` (dB per preset) by each layer group quantised alone, by all and by all but the full-resolution blocks."""
    net = load_pretrained(name, weights_dir).to(memory_format=torch.channels_last)
    fp32 = {preset: mean_psnr(net, pairs) for preset, pairs in val.items()}
    variants = {f"only {group}": {"only": [group]} for group in layer_groups(net)}
    kept = full_resolution_blocks(net)
    variants |= {"all": {}, "all but " + ", ".join(kept): {"kept_float": kept}}
    rows = []
    for label, choice in variants.items():
        module = quantize(net, calibration_batches(train_src, crops, seed), **choice).module()
        rows.append({"quantised": label, **{preset: fp32[preset] - mean_psnr(module, pairs) for preset, pairs in val.items()}})
        print(f"| {label} | " + " | ".join(f"{rows[-1][preset]:.3f}" for preset in val) + " |", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Quantise the named models and print each one's scores and verdict."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--train-src", type=Path, help="clean training photos (default: the corpus's train/)")
    parser.add_argument("--val-src", type=Path, help="clean validation photos (default: the corpus's val/)")
    parser.add_argument("--calibration", type=int, default=256, help="calibration crops")
    parser.add_argument("--val-crops", type=int, default=144, help="validation crops per preset (a multiple of 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sensitivity", action="store_true", help="print each layer group's int8 loss instead; writes nothing")
    args = parser.parse_args(argv)
    train_src = split_argument(parser, args.train_src, "train")
    val_src = split_argument(parser, args.val_src, "val")
    if args.val_crops % BATCH:
        parser.error(f"--val-crops must be a multiple of {BATCH}")
    val_images = usable_images(val_src, TILE)
    val = {preset: fixed_pairs(val_images, TILE, args.val_crops, PRESETS[preset], seed=args.seed + 1) for preset in GATE_PRESETS}
    for name in args.models:
        if args.sensitivity:
            print(f"{name}: dB lost to int8, {args.calibration} calibration crops\n\n| quantised | "
                  + " | ".join(GATE_PRESETS) + " |\n|---|" + "---:|" * len(GATE_PRESETS), flush=True)
            sensitivity(name, args.weights_dir, train_src, val, args.calibration, args.seed)
            continue
        record = quantize_model(name, args.weights_dir, train_src, val, args.calibration, args.seed)
        scores = ", ".join(f"{preset} {s['fp32']:.3f} -> {s['int8']:.3f}" for preset, s in record["val"].items())
        verdict = "kept" if record["candidate"] else f"not kept (limit {MAX_LOSS_DB} dB)"
        print(f"{name}: {scores}; loses {record['max_loss_db']:.3f} dB: {verdict}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
