"""Real photographs for tests, from the sample data that scikit-image ships in its wheel (``skimage.data``).

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
