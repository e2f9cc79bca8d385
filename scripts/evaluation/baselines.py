"""Classical denoisers on uint8 HxWx3 images: OpenCV non-local means, CBM3D, median + CBM3D.

    python -m scripts.evaluation.baselines --tune               # grid-search the sigma factors on val crops

Every baseline is told the image's true effective noise level ``sigma`` (oracle: the std of
noisy - clean on the 0-255 scale) and scales it by a factor tuned on the validation split:
NLM filters with strength ``h = factor * sigma``, CBM3D assumes white noise of std
``factor * sigma``. CBM3D comes from the optional ``bm3d`` package (``pip install bm3d``);
without it the CBM3D rows are skipped. The median variant removes salt-and-pepper impulses
with a 3x3 median first, which BM3D alone cannot (it treats them as signal).
"""
from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from models.degradations import PRESETS, degrade
from models.noise_steps import to_uint8
from scripts.evaluation.metrics import psnr
from scripts.paths import split_argument

# Sigma factor per noise setting, chosen with ``--tune`` on 192x192 centre crops of four
# validation images (seed 1, not the evaluation seed; grids in docs/results.md).
# Factors scale the oracle sigma, so gaussian15, gaussian50, poisson and speckle reuse the
# factors tuned on gaussian25 (CBM3D is told the true std of the noise at factor 1).
FACTORS: dict[str, dict[str, float]] = {
    name: {"hybrid": hybrid, **dict.fromkeys(("gaussian15", "gaussian25", "gaussian50", "poisson", "speckle"), white)}
    for name, hybrid, white in (("nlm", 0.8, 0.6), ("cbm3d", 2.0, 1.0), ("median_cbm3d", 1.2, 0.8))
}

Denoiser = Callable[[np.ndarray, float, float], np.ndarray]


def bm3d_available() -> bool:
    """Whether the optional ``bm3d`` package can be imported."""
    return importlib.util.find_spec("bm3d") is not None


def oracle_sigma(clean: np.ndarray, noisy: np.ndarray) -> float:
    """The true effective noise level of one image: std of ``noisy - clean`` (0-255 scale)."""
    return float((noisy.astype(np.float64) - clean.astype(np.float64)).std())


def nlm(noisy: np.ndarray, sigma: float, factor: float = 1.0) -> np.ndarray:
    """OpenCV's colour non-local means (7x7 patches, 21x21 search) with ``h = factor * sigma``."""
    h = max(factor * sigma, 1.0)
    return cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(noisy), None, h, h, 7, 21)


def cbm3d(noisy: np.ndarray, sigma: float, factor: float = 1.0) -> np.ndarray:
    """CBM3D (``bm3d.bm3d_rgb``, opponent colour space) assuming white noise of ``factor * sigma``."""
    import bm3d

    result = bm3d.bm3d_rgb(noisy.astype(np.float64) / 255.0, max(factor * sigma, 0.5) / 255.0)
    return to_uint8(result)


def median_cbm3d(noisy: np.ndarray, sigma: float, factor: float = 1.0) -> np.ndarray:
    """A 3x3 median filter per channel (removes impulses), then CBM3D at ``factor * sigma``."""
    return cbm3d(cv2.medianBlur(np.ascontiguousarray(noisy), 3), sigma, factor)


@dataclass(frozen=True)
class Baseline:
    """A classical denoiser, its display title and whether it needs ``bm3d``."""

    name: str
    title: str
    run: Denoiser
    needs_bm3d: bool

    def factor(self, setting: str) -> float:
        """The tuned sigma factor for a noise setting."""
        return FACTORS[self.name][setting]

    def __call__(self, noisy: np.ndarray, sigma: float, setting: str) -> np.ndarray:
        """Denoise ``noisy`` given the oracle ``sigma`` with the factor tuned for ``setting``."""
        return self.run(noisy, sigma, self.factor(setting))


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline("nlm", "Non-local means (OpenCV)", nlm, False),
        Baseline("cbm3d", "CBM3D (oracle sigma)", cbm3d, True),
        Baseline("median_cbm3d", "Median 3x3 + CBM3D", median_cbm3d, True),
    )
}

TUNING_GRID: dict[str, tuple[float, ...]] = {
    "nlm": (0.4, 0.6, 0.8, 1.0, 1.3),
    "cbm3d": (0.75, 1.0, 1.5, 2.0, 2.5),
    "median_cbm3d": (0.4, 0.6, 0.8, 1.0, 1.2),
}


def available(names: list[str]) -> list[str]:
    """``names`` without the baselines that need ``bm3d`` when it is missing (says so once)."""
    if bm3d_available():
        return list(names)
    skipped = [n for n in names if n in BASELINES and BASELINES[n].needs_bm3d]
    if skipped:
        print(f"bm3d is not installed ('pip install bm3d'): skipping {', '.join(skipped)}")
    return [n for n in names if n not in skipped]


def tune(
    pairs: list[tuple[np.ndarray, np.ndarray]], grid: dict[str, tuple[float, ...]] = TUNING_GRID
) -> dict[str, dict[float, float]]:
    """Mean PSNR of each baseline at each sigma factor over (clean, noisy) pairs."""
    names = available(list(grid))
    scores: dict[str, dict[float, float]] = {n: {} for n in names}
    jobs = [(n, f) for n in names for f in grid[n]]
    for name, factor in tqdm(jobs, desc="tuning", unit="setting"):
        run = BASELINES[name].run
        values = [psnr(clean, run(noisy, oracle_sigma(clean, noisy), factor)) for clean, noisy in pairs]
        scores[name][factor] = float(np.mean(values))
    return scores


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` crop (or the whole image where it is smaller)."""
    height, width = image.shape[:2]
    top, left = max((height - size) // 2, 0), max((width - size) // 2, 0)
    return image[top:top + size, left:left + size]


def main(argv: list[str] | None = None) -> None:
    """Grid-search the baselines' sigma factors on centre crops of validation images."""
    from scripts.training.dataset import list_images, load_rgb

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tune", action="store_true", help="run the grid search (the only action)")
    parser.add_argument("--images", type=Path,
                        help="validation images, never training ones (default: the corpus's val/)")
    parser.add_argument("--setting", choices=list(PRESETS), default="hybrid")
    parser.add_argument("--methods", nargs="+", choices=list(BASELINES), default=list(BASELINES))
    parser.add_argument("--factors", type=float, nargs="+", help="instead of each method's default grid")
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--limit", type=int, default=4, help="number of images")
    parser.add_argument("--seed", type=int, default=1, help="differs from the evaluation's seed")
    args = parser.parse_args(argv)
    if not args.tune:
        parser.error("nothing to do: pass --tune")
    pairs = []
    for index, path in enumerate(list_images(split_argument(parser, args.images, "val"))[: args.limit]):
        clean = centre_crop(load_rgb(path), args.crop)
        pairs.append((clean, degrade(clean, args.setting, index, args.seed)))
    grid = {name: tuple(args.factors) if args.factors else TUNING_GRID[name] for name in args.methods}
    scores = tune(pairs, grid)
    print(f"{args.setting}, {len(pairs)} crops of {args.crop} px\n")
    print("| Method | sigma factor | mean PSNR (dB) |\n|---|---:|---:|")
    for name, row in scores.items():
        best = max(row, key=row.get)
        for factor, value in row.items():
            mark = " (best)" if factor == best else ""
            print(f"| {BASELINES[name].title} | {factor:g}{mark} | {value:.2f} |")

if __name__ == "__main__":
    main()
