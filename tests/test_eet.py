"""The EET reader against archives written here in Enlightenment's layout (stored, compressed and broken entries)."""
from __future__ import annotations

import struct

import pytest

from scripts.corpus.eet import COMPRESSED, EetArchive, EetError, main
from tests.fake_packages import build_eet

ENTRIES = {
    "edje/images/0": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 30,
    "edje/images/1": b"\xff\xd8 a smaller copy",
    "edje_sources": b"LZ4 frame of the .edc",
}


def test_every_stored_entry_comes_back_with_its_name_and_bytes() -> None:
    archive = EetArchive(build_eet(ENTRIES))
    assert archive.names() == sorted(ENTRIES)
    assert {name: archive.read(name) for name in archive.names()} == ENTRIES


def test_a_compressed_entry_is_refused_and_a_missing_one_is_a_key_error() -> None:
    archive = EetArchive(build_eet(ENTRIES, flags={"edje_sources": COMPRESSED | (10 << 3)}))
    assert archive.read("edje/images/0") == ENTRIES["edje/images/0"]
    with pytest.raises(EetError, match="edje_sources: compressed"):
        archive.read("edje_sources")
    with pytest.raises(KeyError):
        archive.read("edje/images/9")


def test_bytes_that_are_not_an_archive_are_refused() -> None:
    with pytest.raises(EetError, match="magic"):
        EetArchive(b"qres" + bytes(20))
    with pytest.raises(EetError, match="too short"):
        EetArchive(b"\x1e\xe7")


def test_a_directory_that_points_past_the_end_is_refused() -> None:
    data = bytearray(build_eet(ENTRIES))
    struct.pack_into(">I", data, 12 + 4, 10**6)  # the first entry's stored size
    with pytest.raises(EetError, match="entry 0 points past the end"):
        EetArchive(bytes(data))
    with pytest.raises(EetError, match="runs past the end"):
        EetArchive(struct.pack(">3I", 0x1EE70F42, 1000, 0))


def test_the_command_lists_the_entries(tmp_path, capsys) -> None:
    path = tmp_path / "Bamboo.edj"
    path.write_bytes(build_eet(ENTRIES))
    main([str(path)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines] == sorted(ENTRIES)
    assert lines[0].split()[0] == str(len(ENTRIES["edje/images/0"]))
