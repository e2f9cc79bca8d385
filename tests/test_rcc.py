"""The .rcc reader against bundles written here in Qt's layout (nested folders, zlib and stored entries)."""
from __future__ import annotations

import struct

import pytest

from scripts.corpus.rcc import RccBundle, RccError, main
from tests.fake_packages import build_rcc

FILES = {
    "gcompris/animals/README": b"bison.webp: CC0-1.0",
    "gcompris/animals/bison.webp": bytes(range(256)) * 40,
    "gcompris/monuments/petra.webp": b"\x00\x01" * 999,
    "top.txt": "é ü".encode(),
}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_file_comes_back_with_its_path_and_bytes(version: int) -> None:
    bundle = RccBundle(build_rcc(FILES, compressed={"gcompris/animals/bison.webp", "top.txt"}, version=version))
    assert bundle.paths() == sorted(FILES)
    assert {path: bundle.read(path) for path in bundle.paths()} == FILES


def test_a_leading_slash_is_accepted_and_a_missing_path_is_a_key_error() -> None:
    bundle = RccBundle(build_rcc(FILES))
    assert bundle.read("/top.txt") == FILES["top.txt"]
    with pytest.raises(KeyError):
        bundle.read("gcompris/animals/panda.webp")


def test_non_ascii_names_are_decoded_from_utf16() -> None:
    bundle = RccBundle(build_rcc({"château/façade.webp": b"x"}))
    assert bundle.paths() == ["château/façade.webp"]


def test_other_files_and_versions_are_refused() -> None:
    with pytest.raises(RccError, match="magic"):
        RccBundle(b"PK\x03\x04" + bytes(20))
    with pytest.raises(RccError, match="version 9"):
        RccBundle(b"qres" + struct.pack(">4I", 9, 0, 0, 0))


def test_zstd_entries_are_refused_with_a_message() -> None:
    bundle = RccBundle(build_rcc({"a.webp": b"abc"}, zstd={"a.webp"}))
    with pytest.raises(RccError, match="zstd"):
        bundle.read("a.webp")


def test_a_wrong_uncompressed_length_is_detected() -> None:
    data = bytearray(build_rcc({"a.webp": b"abcdef"}, compressed={"a.webp"}))
    at = 24 + 4  # first data entry: its size, then qCompress's length field
    data[at:at + 4] = struct.pack(">I", 7)
    with pytest.raises(RccError, match="header says 7"):
        RccBundle(bytes(data)).read("a.webp")


def test_the_command_lists_files_with_sizes(tmp_path, capsys) -> None:
    bundle = tmp_path / "b.rcc"
    bundle.write_bytes(build_rcc(FILES, compressed={"top.txt"}))
    main([str(bundle)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines] == sorted(FILES)
    assert lines[-1].split()[0] == str(len(FILES["top.txt"]))
