"""A labelled side-by-side collage of noisy input, each network's output and the clean image.

    python -m scripts.evaluation.collage                          # images/test-collage.png from 4 val images

Each row is one validation image, degraded and denoised exactly as ``scripts.evaluation.evaluate`` does
(same seed, setting, tiling and quantisation over the whole image); the panels show the same
crop, labelled with the method and its PSNR on that crop.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from models import MODELS, WEIGHTS_DIR
from models.degradations import PRESETS, degrade
from scripts.evaluation.metrics import psnr
from scripts.evaluation.served import DEFAULT_SEED, denoise_image, served_network
from scripts.paths import IMAGES_DIR, split_argument
from scripts.training.dataset import list_images, load_rgb

OUT_FILE = IMAGES_DIR / "test-collage.png"
LABEL_HEIGHT = 16
GAP = 4


def detailed_crop_origin(image: np.ndarray, size: int, step: int = 32) -> tuple[int, int]:
    """Top-left corner of the ``size`` crop with the most texture (largest gradient energy)."""
    gray = image.astype(np.float64).mean(axis=2)
    energy = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1, :]
    height, width = energy.shape
    best, origin = -1.0, (0, 0)
    for top in range(0, max(height - size, 0) + 1, step):
        for left in range(0, max(width - size, 0) + 1, step):
            value = float(energy[top:top + size, left:left + size].mean())
            if value > best:
                best, origin = value, (top, left)
    return origin


def panel(image: np.ndarray, label: str) -> Image.Image:
    """One crop with a text label on a white strip above it."""
    height, width = image.shape[:2]
    canvas = Image.new("RGB", (width, height + LABEL_HEIGHT), "white")
    canvas.paste(Image.fromarray(image), (0, LABEL_HEIGHT))
    ImageDraw.Draw(canvas).text((2, 2), label, fill="black")
    return canvas


def collage_rows(
    images: list[Path], setting: str, weights_dir: Path, size: int, seed: int, indices: list[int]
) -> list[list[Image.Image]]:
    """Labelled panels (noisy, each network, clean) for each image, as in the evaluation."""
    nets = {name: served_network(name, weights_dir)[0] for name in MODELS}
    rows = []
    for index, path in tqdm(list(zip(indices, images)), desc="collage", unit="img"):
        clean = load_rgb(path)
        noisy = degrade(clean, setting, index, seed)
        top, left = detailed_crop_origin(clean, size)
        crop = (slice(top, top + size), slice(left, left + size))
        target = clean[crop]

        def labelled(result: np.ndarray, title: str) -> Image.Image:
            return panel(result[crop], f"{title} {psnr(target, result[crop]):.2f} dB")

        row = [labelled(noisy, "Noisy")]
        row += [labelled(denoise_image(net, noisy), MODELS[name].title) for name, net in nets.items()]
        row.append(panel(target, f"Clean ({path.stem})"))
        rows.append(row)
    return rows


def assemble(rows: list[list[Image.Image]]) -> Image.Image:
    """Grid the panels with a small white gap."""
    width = max(sum(p.width for p in row) + GAP * (len(row) - 1) for row in rows)
    height = sum(max(p.height for p in row) for row in rows) + GAP * (len(rows) - 1)
    sheet = Image.new("RGB", (width, height), "white")
    y = 0
    for row in rows:
        x = 0
        for item in row:
            sheet.paste(item, (x, y))
            x += item.width + GAP
        y += max(p.height for p in row) + GAP
    return sheet


def main(argv: list[str] | None = None) -> Path:
    """Build the collage from the chosen validation images and save it as PNG."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, help="validation photographs (default: the corpus's val/)")
    parser.add_argument("--pick", type=int, nargs="+", default=[1, 2, 3, 6], help="indices into the sorted folder")
    parser.add_argument("--setting", choices=list(PRESETS), default="hybrid")
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--out", type=Path, default=OUT_FILE)
    args = parser.parse_args(argv)
    files = list_images(split_argument(parser, args.images, "val"))
    picks = [i for i in args.pick if i < len(files)]
    rows = collage_rows([files[i] for i in picks], args.setting, args.weights_dir, args.size, args.seed, picks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    assemble(rows).save(args.out)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
