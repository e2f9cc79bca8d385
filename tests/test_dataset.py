"""Image folders, pixel hashes, random D4 crops and the on-the-fly degraded training stream."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scripts.training.dataset import DegradedCrops, fixed_pairs, list_images, load_rgb, pixel_hash, random_crop, usable_images


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


def identity_noise(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return clean ^ 1


def d4_variants(patch: np.ndarray) -> list[np.ndarray]:
    turns = [np.rot90(patch, k) for k in range(4)]
    return turns + [t[:, ::-1] for t in turns]


def test_random_crop_is_a_d4_transform_of_a_window_of_the_image() -> None:
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    generator = np.random.default_rng(1)
    seen = set()
    for _ in range(64):
        patch = random_crop([image], np.array([1.0]), 8, generator)
        windows = [image[top:top + 8, left:left + 8] for top in range(13) for left in range(23)]
        found = [k for w in windows for k, v in enumerate(d4_variants(w)) if np.array_equal(v, patch)]
        assert found
        seen.update(found)
    assert len(seen) == 8


def test_degraded_crops_stream_batches_with_their_own_noise_per_stream() -> None:
    images = [np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8) for i in range(2)]
    first = next(iter(DegradedCrops(images, 16, 4, identity_noise, seed=0, stream=0)))
    again = next(iter(DegradedCrops(images, 16, 4, identity_noise, seed=0, stream=0)))
    other = next(iter(DegradedCrops(images, 16, 4, identity_noise, seed=0, stream=1)))
    noisy, clean = first
    assert noisy.shape == clean.shape == (4, 16, 16, 3) and noisy.dtype == torch.uint8
    assert torch.equal(noisy, clean ^ 1)
    assert torch.equal(first[1], again[1]) and not torch.equal(first[1], other[1])


def test_fixed_pairs_are_reproducible_and_cycle_over_the_images() -> None:
    images = [np.full((32, 32, 3), v, dtype=np.uint8) for v in (10, 200)]
    noisy, clean = fixed_pairs(images, 16, 5, identity_noise, seed=3)
    assert clean.shape == (5, 16, 16, 3)
    assert [int(c[0, 0, 0]) for c in clean] == [10, 200, 10, 200, 10]
    assert torch.equal(noisy, clean ^ 1)
    assert torch.equal(fixed_pairs(images, 16, 5, identity_noise, seed=3)[1], clean)


def test_usable_images_skip_small_ones_and_refuse_an_empty_set(tmp_path) -> None:
    Image.new("RGB", (64, 48)).save(tmp_path / "big.png")
    Image.new("RGB", (20, 64)).save(tmp_path / "thin.png")
    assert [im.shape for im in usable_images(tmp_path, 32)] == [(48, 64, 3)]
    with pytest.raises(ValueError, match="at least 64 pixels"):
        usable_images(tmp_path, 64)
