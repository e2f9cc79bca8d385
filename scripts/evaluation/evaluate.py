"""Mean PSNR/SSIM of the noisy input, the classical baselines, FFDNet and the three networks.

    python -m scripts.evaluation.evaluate                                   # all settings and methods
    python -m scripts.evaluation.evaluate --methods noisy nlm cbm3d median_cbm3d --settings hybrid
    python -m scripts.evaluation.evaluate --images BSD500/test --limit 20 --out runs/eval-bsd

Each clean image (index ``i`` in sorted order) is degraded with its own generator
``numpy.random.default_rng([seed, i])`` under a noise setting; the networks run over the
whole image through the server's own pipeline (``models.pipeline.denoise_bytes`` on the noisy
image's PNG, with the served tiling) and graph (``models.graphs``, at the precision the handler
would choose here, or ``--precision``) and self-ensemble (``models.ensemble``, or ``--ensemble``),
so a score is what the server's answer would get. Every (setting, method, image)
score is cached under ``OUT/cache`` with the inputs it depends on (seed, image pixels, tuned
factor or weights hash), so an interrupted run resumes and re-evaluating the networks does
not redo the slow CBM3D rows. FFDNet (``scripts.evaluation.ffdnet``, optional like CBM3D) is told the
preset's true sigma and runs on the white Gaussian presets only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models import MODELS, WEIGHTS_DIR
from models.degradations import PRESETS, degrade
from models.ensemble import ENSEMBLE_SIZES
from models.noise import ResidualStats
from models.precision import HANDLER_PRECISIONS
from models.registry import weight_paths
from models.settings import HandlerSettings
from scripts.evaluation import ffdnet
from scripts.evaluation.baselines import BASELINES, available, oracle_sigma
from scripts.evaluation.served import DEFAULT_SEED, denoise_image, score, served_network, served_settings
from scripts.paths import RUNS_DIR, corpus_split, split_argument
from scripts.training.dataset import list_images, load_rgb, pixel_hash

OUT_DIR = RUNS_DIR / "eval"

CLASSICAL = ["noisy", *BASELINES]
PEERS = ["ffdnet"]
METHODS = [*CLASSICAL, *PEERS, *MODELS]
TITLES = {"noisy": "Noisy input", **{n: b.title for n, b in BASELINES.items()}, "ffdnet": "FFDNet (true sigma)",
          **{n: s.title for n, s in MODELS.items()}}

Method = Callable[[np.ndarray, np.ndarray, str], np.ndarray]


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class Contender:
    """One evaluated method: how it denoises (clean, noisy, setting), what its results depend on, where it runs.

    ``settings`` lists the noise settings it is evaluated on; None means all of them.
    """

    name: str
    run: Method
    version: Callable[[str], str]
    settings: tuple[str, ...] | None = None

    def runs_on(self, setting: str) -> bool:
        """Whether this method is evaluated under ``setting``."""
        return self.settings is None or setting in self.settings


def ffdnet_contender() -> Contender | None:
    """FFDNet given each Gaussian preset's true sigma, or None (with a message) when its package is missing."""
    if not ffdnet.available():
        print(f"ffdnet is not installed ('{ffdnet.INSTALL_HINT}'): skipping ffdnet")
        return None
    digest = file_hash(ffdnet.weights_path())
    return Contender(
        "ffdnet", lambda clean, noisy, setting: ffdnet.denoise(noisy, ffdnet.true_sigma(setting)),
        lambda setting, d=digest: f"weights={d} sigma={ffdnet.true_sigma(setting)}", tuple(ffdnet.gaussian_settings()),
    )


def contenders(
    methods: list[str], weights_dir: Path = WEIGHTS_DIR, precision: str = "auto", ensemble: int | None = None,
) -> list[Contender]:
    """Build the requested methods (networks loaded once, bm3d- or ffdnet-dependent ones dropped if missing);
    the networks at ``precision`` and ``ensemble`` (None: each model's served self-ensemble)."""
    result = []
    for name in available(methods):
        if name == "ffdnet":
            peer = ffdnet_contender()
            if peer is not None:
                result.append(peer)
        elif name == "noisy":
            result.append(Contender(name, lambda clean, noisy, setting: noisy, lambda setting: "identity"))
        elif name in BASELINES:
            baseline = BASELINES[name]
            result.append(Contender(
                name,
                lambda clean, noisy, setting, b=baseline: b(noisy, oracle_sigma(clean, noisy), setting),
                lambda setting, b=baseline: f"factor={b.factor(setting)}",
            ))
        elif name in MODELS:
            digest = file_hash(weight_paths(name, weights_dir)[0])
            net, choice = served_network(name, weights_dir, precision, ensemble)
            size = served_settings(name, precision, ensemble).ensemble
            result.append(Contender(
                name, lambda clean, noisy, setting, n=net: denoise_image(n, noisy),
                lambda setting, d=digest, p=choice.served, e=size: f"weights={d} {p} tiles={HandlerSettings().tiles} ensemble={e}",
            ))
        else:
            raise ValueError(f"unknown method {name!r}; choose from {METHODS}")
    return result


def cached_score(
    cache: Path, contender: Contender, clean: np.ndarray, noisy: np.ndarray, setting: str, key: dict
) -> dict[str, float]:
    """Score of ``contender`` on one image, read from ``cache`` when its key matches, else computed and stored."""
    key = {**key, "version": contender.version(setting)}
    if cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored["score"]
    started = time.perf_counter()
    result = contender.run(clean, noisy, setting)
    entry = {"key": key, "score": {**score(clean, result), "seconds": round(time.perf_counter() - started, 3)}}
    cache.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache.with_suffix(".tmp")
    temporary.write_text(json.dumps(entry))
    temporary.replace(cache)
    return entry["score"]


def evaluate(
    images: Path | None = None,
    settings: tuple[str, ...] = tuple(PRESETS),
    methods: list[str] = METHODS,
    weights_dir: Path = WEIGHTS_DIR,
    out: Path = OUT_DIR,
    seed: int = DEFAULT_SEED,
    limit: int | None = None,
    precision: str = "auto",
    ensemble: int | None = None,
) -> dict:
    """Score every method on every image under every setting; returns per-setting means and sigma_eff.

    The networks run at ``precision`` and ``ensemble`` (None: each model's served one). ``images``
    defaults to the corpus's validation split (``paths.corpus_split``).
    """
    images = images or corpus_split("val")
    files = list_images(images)[:limit]
    chosen = contenders(methods, weights_dir, precision, ensemble)
    per_image: dict[str, dict[str, list[dict]]] = {s: {c.name: [] for c in chosen if c.runs_on(s)} for s in settings}
    sigma: dict[str, ResidualStats] = {s: ResidualStats() for s in settings}
    with tqdm(total=len(files) * sum(map(len, per_image.values())), desc="evaluating", unit="result") as bar:
        for setting in settings:
            for index, path in enumerate(files):
                clean = load_rgb(path)
                noisy = degrade(clean, setting, index, seed)
                sigma[setting].update(clean, noisy)
                key = {"seed": seed, "index": index, "image": pixel_hash(clean)}
                for contender in (c for c in chosen if c.runs_on(setting)):
                    bar.set_postfix_str(f"{setting} {contender.name} {path.name}")
                    cache = out / "cache" / setting / contender.name / f"{index:04d}-{path.stem}.json"
                    per_image[setting][contender.name].append(cached_score(cache, contender, clean, noisy, setting, key))
                    bar.update()
    return {
        "images": str(images), "count": len(files), "seed": seed, "tiling": HandlerSettings().tiles.__dict__, "precision": precision,
        "ensemble": ensemble,
        "settings": {
            setting: {
                "sigma_eff": sigma[setting].std,
                "methods": {
                    name: {metric: float(np.mean([r[metric] for r in rows])) for metric in ("psnr", "ssim", "seconds")}
                    for name, rows in per_image[setting].items()
                },
            }
            for setting in settings
        },
    }


def markdown(results: dict) -> str:
    """The results as a Markdown table: one row per method, PSNR / SSIM per setting."""
    settings = results["settings"]
    header = " | ".join(f"{s} (sigma_eff {v['sigma_eff']:.1f})" for s, v in settings.items())
    lines = [
        f"{results['count']} images from `{results['images']}`, seed {results['seed']}; PSNR (dB) / SSIM",
        "",
        f"| Method | {header} |",
        "|---|" + "---:|" * len(settings),
    ]
    names = list(dict.fromkeys(n for v in settings.values() for n in v["methods"]))
    for name in names:
        cells = []
        for value in settings.values():
            row = value["methods"].get(name)
            cells.append(f"{row['psnr']:.2f} / {row['ssim']:.4f}" if row else "-")
        lines.append(f"| {TITLES.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """Parse the command line, evaluate, print the table and write ``results.json`` and ``results.md``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, help="clean images, never training ones (default: the corpus's val/)")
    parser.add_argument("--settings", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS)
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="results and cache folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--precision", choices=HANDLER_PRECISIONS, default="auto", help="the networks' graph (auto: the handler's choice)")
    parser.add_argument("--ensemble", type=int, choices=ENSEMBLE_SIZES,
                        help="the networks' self-ensemble (default: each model's served one, models.settings.ENSEMBLES)")
    args = parser.parse_args(argv)
    images = split_argument(parser, args.images, "val")
    results = evaluate(images, args.settings, args.methods, args.weights_dir, args.out, args.seed, args.limit,
                       args.precision, args.ensemble)
    table = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(table)
    print(table)
    return results


if __name__ == "__main__":
    main()
