"""Cut clean/noisy patch pairs from a folder of photographs into uint8 ``.npy`` memmaps.

    python -m scripts.prepare_dataset                       # train and val of the corpus (scripts/paths.py)
    python -m scripts.prepare_dataset --train-src BSD500/train --val-src BSD500/val

Each source image gets a number of patches proportional to its area and its own random
stream (seed, image index), so the result depends only on the seed and the files, and an
interrupted run resumes image by image. Noise is drawn per patch from the hybrid model.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.noise import NoiseConfig, ResidualStats, add_hybrid_noise

from .dataset import list_images, load_rgb, pixel_hash
from .paths import DATA_DIR, split_argument


def read_meta(folder: Path) -> dict:
    """The ``meta.json`` written beside a prepared set of pairs."""
    return json.loads((Path(folder) / "meta.json").read_text())


def allocate(areas: list[int], count: int) -> list[int]:
    """Split ``count`` patches over images in proportion to their areas (largest remainders)."""
    shares = np.asarray(areas, dtype=np.float64) / sum(areas) * count
    counts = np.floor(shares).astype(int)
    for i in np.argsort(-(shares - counts))[: count - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def prepare_pairs(
    source: Path,
    out: Path,
    count: int,
    patch: int = 128,
    seed: int = 0,
    config: NoiseConfig = NoiseConfig(),
    forbidden: set[str] = frozenset(),
) -> dict:
    """Write ``count`` patch pairs from the images under ``source`` to ``out``; returns the metadata.

    ``forbidden`` holds pixel hashes (``dataset.pixel_hash``) of images that must not
    contribute, such as the other split's. A finished, identical run is left as it is; an
    interrupted one continues from the last completed image.
    """
    out = Path(out)
    files = list_images(source)
    images = [load_rgb(p) for p in tqdm(files, desc=f"reading {source}", unit="img")]
    usable = [(f, im) for f, im in zip(files, images) if min(im.shape[:2]) >= patch]
    hashes = [pixel_hash(im) for _, im in usable]
    leaked = [str(f) for (f, _), h in zip(usable, hashes) if h in forbidden]
    if leaked:
        raise ValueError(f"images also in the other split: {leaked}")
    counts = allocate([im.shape[0] * im.shape[1] for _, im in usable], count)
    request = {
        "source": str(source), "count": count, "patch": patch, "seed": seed, "noise": config.describe(),
        "images": [{"file": f.name, "sha256": h, "patches": n} for (f, _), h, n in zip(usable, hashes, counts)],
    }
    meta_path, progress_path = out / "meta.json", out / "progress.json"
    progress = {"images_done": 0, "patches_done": 0}
    if meta_path.exists():
        meta = read_meta(out)
        if {k: meta.get(k) for k in request} == request:
            if "sigma_eff" in meta:
                return meta
            progress = json.loads(progress_path.read_text()) if progress_path.exists() else progress
    out.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(request, indent=2))
    shape = (count, patch, patch, 3)
    mode = "r+" if progress["images_done"] else "w+"
    clean_arr = np.lib.format.open_memmap(out / "clean.npy", mode=mode, dtype=np.uint8, shape=shape)
    noisy_arr = np.lib.format.open_memmap(out / "noisy.npy", mode=mode, dtype=np.uint8, shape=shape)
    stats = ResidualStats()
    index = progress["patches_done"]
    with tqdm(total=count, initial=index, desc=f"pairs -> {out}", unit="pair") as bar:
        for image_index, ((_, image), n) in enumerate(zip(usable, counts)):
            if image_index < progress["images_done"]:
                continue
            rng = np.random.default_rng([seed, image_index])
            height, width = image.shape[:2]
            for _ in range(n):
                top, left = rng.integers(0, height - patch + 1), rng.integers(0, width - patch + 1)
                clean = image[top:top + patch, left:left + patch]
                clean_arr[index], (noisy_arr[index], _) = clean, add_hybrid_noise(clean, rng, config)
                index += 1
            bar.update(n)
            clean_arr.flush()
            noisy_arr.flush()
            progress = {"images_done": image_index + 1, "patches_done": index}
            progress_path.write_text(json.dumps(progress))
    for start in range(0, count, 4096):
        stats.update(clean_arr[start:start + 4096], noisy_arr[start:start + 4096])
    meta = {**request, "sigma_eff": stats.std, "residual_mean": stats.mean}
    meta_path.write_text(json.dumps(meta, indent=2))
    progress_path.unlink(missing_ok=True)
    return meta


def main(argv: list[str] | None = None) -> None:
    """Prepare the training and validation pairs and print sigma_eff of the validation pairs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-src", type=Path, help="training photographs (default: the corpus's train/)")
    parser.add_argument("--val-src", type=Path, help="validation photographs (default: the corpus's val/)")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="writes OUT/train and OUT/val")
    parser.add_argument("--train-count", type=int, default=32000)
    parser.add_argument("--val-count", type=int, default=1024)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train_src = split_argument(parser, args.train_src, "train")
    val_src = split_argument(parser, args.val_src, "val")
    train = prepare_pairs(train_src, args.out / "train", args.train_count, args.patch, args.seed)
    forbidden = {image["sha256"] for image in train["images"]}
    val = prepare_pairs(val_src, args.out / "val", args.val_count, args.patch, args.seed + 1, forbidden=forbidden)
    print(f"train: {args.train_count} pairs from {len(train['images'])} images, sigma_eff {train['sigma_eff']:.2f}")
    print(f"val:   {args.val_count} pairs from {len(val['images'])} images, sigma_eff {val['sigma_eff']:.2f}")


if __name__ == "__main__":
    main()
