"""Pictures for tests: real photographs from the sample data that scikit-image ships in its wheel
(``skimage.data``), and ``synthetic_photo``, a smooth colour picture of any size with grain.

Tests build their small image folders from these in temporary folders, so they never need a
corpus beside the repository. Licences, as ``skimage.data``'s docstrings state them:

- ``astronaut``: public domain (NASA; Eileen Collins);
- ``camera``: CC0 (Lav Varshney), greyscale;
- ``chelsea``: CC0 (Stefan van der Walt);
- ``coffee``: CC0 (Rachel Michetti);
- ``rocket``: public domain (SpaceX).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

LICENCES = {
    "astronaut": "public domain (NASA)",
    "camera": "CC0 (Lav Varshney)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "rocket": "public domain (SpaceX)",
}
TRAIN_PHOTOS = ("astronaut", "camera", "rocket")
VAL_PHOTOS = ("chelsea", "coffee")


def photo(name: str) -> np.ndarray:
    """One of the ``LICENCES`` photographs as uint8 HxWx3 (grey copied into the three channels)."""
    if name not in LICENCES:
        raise ValueError(f"{name!r} is not one of the test photos {sorted(LICENCES)}")
    image = getattr(skimage.data, name)()
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def photo_folder(folder: Path, names: tuple[str, ...]) -> Path:
    """Write the named photographs as ``NAME.png`` into ``folder`` (created); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(photo(name)).save(folder / f"{name}.png")
    return folder


def synthetic_photo(width: int, height: int, seed: int = 0, grain: float = 12.0) -> np.ndarray:
    """A smooth colour picture (two ramps and a diagonal wave) with Gaussian grain of std ``grain``: uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / max(width, 1), y / max(height, 1), 0.5 + 0.4 * np.sin((x + y) / 7.0)], axis=-1) * 220
    return np.clip(base + rng.normal(0, grain, base.shape), 0, 255).astype(np.uint8)


def synthetic_folder(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> Path:
    """Write ``count`` synthetic photos of ``size`` (width, height) as ``imgN.png`` into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(synthetic_photo(*size, seed=seed + index)).save(folder / f"img{index}.png")
    return folder
