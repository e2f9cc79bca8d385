"""Image folders, content hashes, D4 augmentation and the memory-mapped patch-pair dataset."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

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


def d4(x: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th of the 8 dihedral transforms (k % 4 quarter turns, then a flip if k >= 4)."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


def d4_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Undo ``d4(x, k)``."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, -(k % 4), dims=(-2, -1))


def read_meta(folder: Path) -> dict:
    """The ``meta.json`` written beside a prepared set of pairs."""
    return json.loads((Path(folder) / "meta.json").read_text())


class PatchPairs(Dataset):
    """Clean/noisy uint8 patch pairs read lazily from ``clean.npy``/``noisy.npy`` memmaps.

    Each item is ``(noisy, clean)`` as float CxHxW tensors in [0, 1]; with ``augment`` a
    random crop of side ``crop`` and one of the 8 D4 transforms are drawn per item, the same
    for both halves of the pair. ``limit`` keeps that many pairs evenly spaced over the set,
    so a small validation subset still spans every source image.
    """

    def __init__(self, folder: Path, crop: int | None = None, augment: bool = True, limit: int | None = None) -> None:
        self.folder = Path(folder)
        self.clean = np.load(self.folder / "clean.npy", mmap_mode="r")
        self.noisy = np.load(self.folder / "noisy.npy", mmap_mode="r")
        total = len(self.clean)
        self.indices = np.linspace(0, total - 1, min(limit or total, total)).round().astype(int)
        self.crop = crop
        self.augment = augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.indices[index]
        pair = torch.from_numpy(np.stack([self.noisy[row], self.clean[row]])).permute(0, 3, 1, 2)
        if self.crop is not None and self.crop < pair.shape[-1]:
            top, left = (int(v) for v in torch.randint(0, pair.shape[-1] - self.crop + 1, (2,)))
            pair = pair[..., top:top + self.crop, left:left + self.crop]
        if self.augment:
            pair = d4(pair, int(torch.randint(0, 8, ())))
        pair = pair.float() / 255.0
        return pair[0], pair[1]
