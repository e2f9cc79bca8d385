"""The session's guard against reading ``../shared``, which a fresh clone does not have.

The guard is pointed at a stand-in folder made here, so these tests behave the same whether or
not this machine has ``../shared``.
"""
from __future__ import annotations

import os

import pytest

from scripts.paths import CORPUS_CANDIDATES, REPO
from tests import isolation
from tests.isolation import OutsideRepository, under


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """A stand-in shared folder with a small corpus in it, guarded like the real one."""
    folder = tmp_path / "shared"
    for split in ("train", "val"):
        (folder / "corpus" / split).mkdir(parents=True)
        (folder / "corpus" / split / "photo.png").write_bytes(b"png")
    monkeypatch.setattr(isolation, "SHARED", folder)
    return folder


def test_the_guard_covers_every_corpus_outside_the_repository_and_not_the_repository() -> None:
    outside = [candidate for candidate in CORPUS_CANDIDATES if not candidate.is_relative_to(REPO)]
    assert outside and all(under(candidate / "val" / "photo.png", isolation.SHARED) for candidate in outside)
    assert not under(REPO / "tests", isolation.SHARED)


@pytest.mark.parametrize("read", [
    lambda shared: open(shared / "corpus" / "val" / "photo.png", "rb"),
    lambda shared: open(shared / "corpus" / "val" / "missing.png", "rb"),
    lambda shared: os.listdir(shared / "corpus"),
    lambda shared: list(os.scandir(shared)),
    lambda shared: list((shared / "corpus" / "train").glob("*.png")),
    lambda shared: list(shared.rglob("*.png")),
], ids=["open", "open-missing", "listdir", "scandir", "glob", "rglob"])
def test_reading_under_shared_fails(shared, read) -> None:
    with pytest.raises(OutsideRepository, match="fresh clone"):
        read(shared)


def test_a_relative_path_is_caught_too(shared, monkeypatch) -> None:
    (shared.parent / "repo").mkdir()
    monkeypatch.chdir(shared.parent / "repo")
    with pytest.raises(OutsideRepository):
        open("../shared/corpus/train/photo.png")


def test_reading_elsewhere_is_untouched(shared, tmp_path) -> None:
    other = tmp_path / "other" / "shared"
    other.mkdir(parents=True)
    (other / "a.txt").write_text("ok")
    assert (other / "a.txt").read_text() == "ok" and os.listdir(other) == ["a.txt"]
    assert not under(other, shared) and not under(3, shared)
    assert under(str(shared / "x").encode(), shared)
