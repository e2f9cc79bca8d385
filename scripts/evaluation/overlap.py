"""Choose the tile overlap by measurement: val PSNR and time per megapixel for each overlap.

    python -m scripts.evaluation.overlap                               # overlaps 0 8 16 24 32, all models
    python -m scripts.evaluation.overlap --models model_runet --setting gaussian25 --limit 4

Every validation image is degraded as ``scripts.evaluation.evaluate`` does and denoised through the
served pipeline (``models.pipeline.denoise_bytes``, the graph the handler would choose here)
with 128x128 tiles at each overlap, and once as a whole image (``models.tiling.denoise_whole``,
no tiles at all, through the TorchScript graph of the served precision) for reference. Time per
megapixel is the pipeline's network and tiling time (decode and PNG encode do not depend on the
overlap), the median over the images.
"""
from __future__ import annotations

import argparse
import io
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from models import MODELS, WEIGHTS_DIR, load_pretrained
from models.degradations import PRESETS, degrade
from models.graphs import trace_graph
from models.noise_steps import to_uint8
from models.pipeline import denoise_bytes
from models.settings import HandlerSettings
from models.tiling import denoise_whole, edge_margin
from scripts.evaluation.served import png_bytes, score, served_network
from scripts.paths import split_argument
from scripts.training.dataset import list_images, load_rgb

OVERLAPS = (0, 8, 16, 24, 32)


def measure(name: str, files: list[Path], setting: str, overlaps: tuple[int, ...], weights_dir: Path) -> list[dict]:
    """One row per overlap (and one for the whole image) with mean PSNR and median seconds per MP."""
    net, choice = served_network(name, weights_dir)
    # A compiled package takes only tile batches: the whole image goes through the TorchScript graph of its precision.
    whole_net = trace_graph(load_pretrained(name, weights_dir), choice.precision)
    base = HandlerSettings().tiles
    psnr: dict[str, list[float]] = {}
    per_mp: dict[str, list[float]] = {}
    tiles_per_mp: dict[str, list[float]] = {}
    for index, path in enumerate(tqdm(files, desc=name, unit="img")):
        clean = load_rgb(path)
        noisy = degrade(clean, setting, index)
        megapixels = clean.shape[0] * clean.shape[1] / 1e6
        body = png_bytes(noisy)
        for overlap in overlaps:
            answer = denoise_bytes(net, body, replace(base, overlap=overlap))
            result = np.asarray(Image.open(io.BytesIO(answer.png)).convert("RGB"))
            key = str(overlap)
            psnr.setdefault(key, []).append(score(clean, result)["psnr"])
            per_mp.setdefault(key, []).append((answer.seconds["network"] + answer.seconds["tiling"]) / megapixels)
            tiles_per_mp.setdefault(key, []).append(answer.tiles / megapixels)
        tensor = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1))).float() / 255.0
        whole = denoise_whole(whole_net, tensor, 2 ** MODELS[name].config["depth"])
        result = to_uint8(whole.numpy().transpose(1, 2, 0))
        psnr.setdefault("whole", []).append(score(clean, result)["psnr"])
    reference = float(np.mean(psnr["whole"]))
    rows = [{
        "model": name, "precision": choice.served, "overlap": overlap, "margin": edge_margin(overlap),
        "tiles_per_mp": statistics.median(tiles_per_mp[str(overlap)]), "psnr": float(np.mean(psnr[str(overlap)])),
        "vs_whole": float(np.mean(psnr[str(overlap)])) - reference, "seconds_per_mp": statistics.median(per_mp[str(overlap)]),
    } for overlap in overlaps]
    rows.append({"model": name, "precision": choice.served, "overlap": "whole image", "margin": "-", "tiles_per_mp": "-",
                 "psnr": reference, "vs_whole": 0.0, "seconds_per_mp": float("nan")})
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    lines = ["| model | precision | overlap | discarded margin | tiles per MP | PSNR (dB) | vs whole image | s per MP |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        tiles = row["tiles_per_mp"] if isinstance(row["tiles_per_mp"], str) else f"{row['tiles_per_mp']:.0f}"
        seconds = "-" if np.isnan(row["seconds_per_mp"]) else f"{row['seconds_per_mp']:.2f}"
        lines.append(f"| {MODELS[row['model']].title} | {row['precision']} | {row['overlap']} | {row['margin']} | {tiles} "
                     f"| {row['psnr']:.3f} | {row['vs_whole']:+.3f} | {seconds} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse the command line, measure every model and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, help="clean validation images (default: the corpus's val/)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--setting", choices=list(PRESETS), default="hybrid")
    parser.add_argument("--overlaps", nargs="+", type=int, default=list(OVERLAPS))
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--threads", type=int, default=HandlerSettings().threads)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    files = list_images(split_argument(parser, args.images, "val"))[:args.limit]
    rows = [row for name in args.models for row in measure(name, files, args.setting, tuple(args.overlaps), args.weights_dir)]
    print(f"{len(files)} images, {args.setting} noise, {args.threads} threads\n\n{markdown(rows)}")
    return rows


if __name__ == "__main__":
    main()
