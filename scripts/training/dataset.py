"""Image folders, content hashes, D4 augmentation and clean crops degraded on the fly for training."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import IterableDataset, get_worker_info

from models.degradations import Degradation

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(folder: Path) -> list[Path]:
    """Every image file directly or recursively under ``folder``, sorted by path."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return files


def load_rgb(path: Path) -> np.ndarray:
    """Decode an image file to uint8 HxWx3 RGB with its EXIF orientation applied."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def pixel_hash(image: np.ndarray) -> str:
    """SHA-256 of an image's decoded pixels and shape: equal for the same picture in any file format."""
    digest = hashlib.sha256(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def crop_anywhere(image: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """A ``crop`` x ``crop`` view of ``image`` at a uniformly drawn position."""
    top = int(rng.integers(0, image.shape[0] - crop + 1))
    left = int(rng.integers(0, image.shape[1] - crop + 1))
    return image[top:top + crop, left:left + crop]


def random_crop(images: list[np.ndarray], weights: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    """A ``crop`` x ``crop`` patch of an image drawn in proportion to ``weights``, under a random D4 transform."""
    patch = np.rot90(crop_anywhere(images[rng.choice(len(images), p=weights)], crop, rng), int(rng.integers(4)))
    return np.ascontiguousarray(patch[:, ::-1] if rng.random() < 0.5 else patch)


def usable_images(folder: Path, crop: int) -> list[np.ndarray]:
    """The decoded RGB images under ``folder`` whose shorter side holds at least one ``crop``."""
    images = [image for image in map(load_rgb, list_images(folder)) if min(image.shape[:2]) >= crop]
    if not images:
        raise ValueError(f"no image under {folder} is at least {crop} pixels on its shorter side")
    return images


def refuse_shared_images(train: list[np.ndarray], val: list[np.ndarray]) -> None:
    """Raise ``ValueError`` when a validation image's pixels are also among the training images."""
    shared = {pixel_hash(image) for image in train} & {pixel_hash(image) for image in val}
    if shared:
        raise ValueError(f"{len(shared)} validation image(s) are also training images: keep the splits apart")


class DegradedCrops(IterableDataset):
    """An endless stream of ``(noisy, clean)`` uint8 BxHxWx3 batches: random clean crops, degraded on the fly.

    Images are drawn in proportion to their area, each crop under one of the 8 D4 transforms.
    Every loader worker has its own generator, seeded by ``(seed, stream, worker id)``: a resumed
    run passes a new ``stream`` (its step count), so a long run never sees the same noise twice.
    """

    def __init__(self, images: list[np.ndarray], crop: int, batch: int, degradation: Degradation,
                 seed: int = 0, stream: int = 0) -> None:
        self.images, self.crop, self.batch = images, crop, batch
        self.degradation, self.seed, self.stream = degradation, seed, stream
        areas = np.array([image.shape[0] * image.shape[1] for image in images], dtype=np.float64)
        self.weights = areas / areas.sum()

    def __iter__(self):
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, self.stream, info.id if info else 0])
        while True:
            clean = np.stack([random_crop(self.images, self.weights, self.crop, rng) for _ in range(self.batch)])
            noisy = np.stack([self.degradation(patch, rng) for patch in clean])
            yield torch.from_numpy(noisy), torch.from_numpy(clean)


def fixed_pairs(images: list[np.ndarray], crop: int, count: int, degradation: Degradation,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` reproducible ``(noisy, clean)`` uint8 crops spread over ``images``: a validation set.

    Crop ``i`` comes from image ``i % len(images)`` at a position and with noise drawn from
    ``default_rng([seed, i])``, so the set depends only on the images, the seed and the degradation.
    """
    noisy, clean = [], []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        patch = np.ascontiguousarray(crop_anywhere(images[index % len(images)], crop, rng))
        clean.append(patch)
        noisy.append(degradation(patch, rng))
    return torch.from_numpy(np.stack(noisy)), torch.from_numpy(np.stack(clean))
