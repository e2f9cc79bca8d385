"""Dataset preparation: determinism, resume, allocation and the train/validation split."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from models.noise import NoiseConfig
from scripts.prepare_dataset import allocate, main, prepare_pairs


def write_images(folder, count: int, seed: int, size=(160, 200)) -> None:
    folder.mkdir(parents=True)
    generator = np.random.default_rng(seed)
    for i in range(count):
        pixels = generator.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")


@pytest.fixture()
def corpus(tmp_path):
    write_images(tmp_path / "train", 3, seed=1)
    write_images(tmp_path / "val", 2, seed=2)
    return tmp_path


def test_allocate_is_proportional_and_exact() -> None:
    assert allocate([100, 100, 200], 8) == [2, 2, 4]
    assert sum(allocate([3, 5, 7], 10)) == 10


def test_same_seed_gives_the_same_pairs(corpus, tmp_path) -> None:
    a = prepare_pairs(corpus / "train", tmp_path / "a", 24, patch=32, seed=5)
    b = prepare_pairs(corpus / "train", tmp_path / "b", 24, patch=32, seed=5)
    prepare_pairs(corpus / "train", tmp_path / "c", 24, patch=32, seed=6)
    for name in ("clean.npy", "noisy.npy"):
        assert np.array_equal(np.load(tmp_path / "a" / name), np.load(tmp_path / "b" / name))
    assert not np.array_equal(np.load(tmp_path / "a" / "noisy.npy"), np.load(tmp_path / "c" / "noisy.npy"))
    assert a["sigma_eff"] == b["sigma_eff"] > 0
    assert np.load(tmp_path / "a" / "clean.npy").shape == (24, 32, 32, 3)


def test_interrupted_run_resumes_to_the_same_result(corpus, tmp_path) -> None:
    full = tmp_path / "full"
    prepare_pairs(corpus / "train", full, 24, patch=32, seed=5)
    partial = tmp_path / "partial"
    prepare_pairs(corpus / "train", partial, 24, patch=32, seed=5)
    meta = json.loads((partial / "meta.json").read_text())
    del meta["sigma_eff"]
    (partial / "meta.json").write_text(json.dumps(meta))
    first = meta["images"][0]["patches"]
    (partial / "progress.json").write_text(json.dumps({"images_done": 1, "patches_done": first}))
    noisy = np.load(partial / "noisy.npy", mmap_mode="r+")
    noisy[first:] = 0
    noisy.flush()
    prepare_pairs(corpus / "train", partial, 24, patch=32, seed=5)
    assert np.array_equal(np.load(full / "noisy.npy"), np.load(partial / "noisy.npy"))
    assert not (partial / "progress.json").exists()


def test_patches_come_from_their_source_images(corpus, tmp_path) -> None:
    prepare_pairs(corpus / "train", tmp_path / "p", 12, patch=32, seed=0, config=NoiseConfig.gaussian(0))
    clean, noisy = np.load(tmp_path / "p" / "clean.npy"), np.load(tmp_path / "p" / "noisy.npy")
    assert np.array_equal(clean, noisy)


def test_no_image_contributes_to_both_splits(corpus, tmp_path, capsys) -> None:
    main(["--train-src", str(corpus / "train"), "--val-src", str(corpus / "val"), "--out", str(tmp_path / "d"),
          "--train-count", "12", "--val-count", "6", "--patch", "32"])
    train = json.loads((tmp_path / "d" / "train" / "meta.json").read_text())
    val = json.loads((tmp_path / "d" / "val" / "meta.json").read_text())
    assert not {i["sha256"] for i in train["images"]} & {i["sha256"] for i in val["images"]}
    assert "sigma_eff" in capsys.readouterr().out


def test_an_image_in_both_splits_is_refused(corpus, tmp_path) -> None:
    (corpus / "val" / "leak.png").write_bytes((corpus / "train" / "img0.png").read_bytes())
    with pytest.raises(ValueError, match="other split"):
        main(["--train-src", str(corpus / "train"), "--val-src", str(corpus / "val"), "--out", str(tmp_path / "d"),
              "--train-count", "12", "--val-count", "6", "--patch", "32"])
