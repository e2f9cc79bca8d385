"""The session's guard against reading ``../shared``, which a fresh clone does not have."""
from __future__ import annotations

import os

import pytest

from scripts.paths import REPO
from tests.isolation import SHARED, OutsideRepository, under


def test_the_guarded_folder_is_the_shared_folder_beside_the_repository() -> None:
    assert SHARED == REPO.parent / "shared"


@pytest.mark.parametrize("read", [
    lambda: open(SHARED / "corpus" / "val" / "any.png", "rb"),
    lambda: os.listdir(SHARED / "corpus"),
    lambda: list(os.scandir(SHARED)),
    lambda: list((SHARED / "corpus" / "train").glob("*.png")),
], ids=["open", "listdir", "scandir", "glob"])
def test_reading_under_shared_fails_whether_or_not_it_exists(read) -> None:
    with pytest.raises(OutsideRepository, match="fresh clone"):
        read()


def test_a_relative_path_is_caught_too(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(OutsideRepository):
        open("../shared/corpus/SOURCES.md")


def test_reading_elsewhere_is_untouched(tmp_path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "a.txt").write_text("ok")
    assert (tmp_path / "shared" / "a.txt").read_text() == "ok"
    assert not under(tmp_path / "shared", SHARED) and not under(3, SHARED)
    assert under(str(SHARED / "x").encode(), SHARED)
