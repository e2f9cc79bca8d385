"""D4 augmentation, image folders and the memory-mapped patch-pair dataset."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scripts.dataset import PatchPairs, d4, d4_inverse, list_images, load_rgb, pixel_hash


def test_d4_transforms_are_invertible_and_cover_all_eight() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    images = {tuple(d4(x, k).flatten().tolist()) for k in range(8)}
    assert len(images) == 8
    for k in range(8):
        assert torch.equal(d4_inverse(d4(x, k), k), x)


def test_list_images_finds_every_format_recursively(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "sub/b.JPG", "c.webp", "d.tif"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "c.webp", "d.tif", "b.JPG"]
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "sub" / "empty")


def test_load_rgb_applies_exif_orientation_and_converts_gray(tmp_path) -> None:
    image = Image.new("L", (20, 10), 50)
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(tmp_path / "rotated.jpg", exif=exif)
    loaded = load_rgb(tmp_path / "rotated.jpg")
    assert loaded.shape == (20, 10, 3) and loaded.dtype == np.uint8


def test_pixel_hash_ignores_the_file_format(tmp_path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "a.bmp")
    assert pixel_hash(load_rgb(tmp_path / "a.png")) == pixel_hash(load_rgb(tmp_path / "a.bmp"))
    assert pixel_hash(pixels) != pixel_hash(pixels[:, ::-1])


def make_pairs(folder, count: int = 10, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(0)
    clean = generator.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    noisy = generator.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "clean.npy", clean)
    np.save(folder / "noisy.npy", noisy)
    return clean, noisy


def test_patch_pairs_apply_the_same_crop_and_transform_to_both_halves(tmp_path) -> None:
    clean, noisy = make_pairs(tmp_path)
    torch.manual_seed(0)
    dataset = PatchPairs(tmp_path, crop=8)
    for index in range(len(dataset)):
        got_noisy, got_clean = dataset[index]
        assert got_noisy.shape == got_clean.shape == (3, 8, 8)
        matches = [
            (k, top, left)
            for k in range(8) for top in range(9) for left in range(9)
            if torch.equal(d4_inverse(got_clean, k), torch.from_numpy(clean[index, top:top + 8, left:left + 8]).permute(2, 0, 1) / 255.0)
        ]
        assert any(
            torch.equal(d4_inverse(got_noisy, k), torch.from_numpy(noisy[index, t:t + 8, l:l + 8]).permute(2, 0, 1) / 255.0)
            for k, t, l in matches
        )


def test_patch_pairs_without_augmentation_and_limit_spread_over_the_set(tmp_path) -> None:
    clean, noisy = make_pairs(tmp_path, count=10)
    dataset = PatchPairs(tmp_path, augment=False, limit=4)
    assert len(dataset) == 4
    assert dataset.indices.tolist() == [0, 3, 6, 9]
    got_noisy, got_clean = dataset[3]
    assert torch.equal(got_clean, torch.from_numpy(clean[9]).permute(2, 0, 1) / 255.0)
    assert torch.equal(got_noisy, torch.from_numpy(noisy[9]).permute(2, 0, 1) / 255.0)
