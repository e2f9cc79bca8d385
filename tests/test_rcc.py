"""The .rcc reader against bundles written here in Qt's layout (nested folders, zlib and stored entries)."""
from __future__ import annotations

import struct
import zlib

import pytest

from scripts.rcc import COMPRESSED, COMPRESSED_ZSTD, DIRECTORY, RccBundle, RccError, main


def build_rcc(files: dict[str, bytes], compressed: set[str] = frozenset(), version: int = 3, zstd: set[str] = frozenset()) -> bytes:
    """A Qt resource bundle holding ``files`` (path -> bytes), laid out as ``rcc`` lays it out.

    Nodes are numbered breadth first, each folder's children contiguous; names are stored once
    each, data one entry per file (``qCompress`` framing for the ``compressed`` paths).
    """
    tree: dict = {}
    for path, data in files.items():
        *folders, leaf = path.split("/")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = path
    names, name_offsets = bytearray(), {}
    payload, data_offsets = bytearray(), {}

    def name_offset(name: str) -> int:
        if name not in name_offsets:
            name_offsets[name] = len(names)
            encoded = name.encode("utf-16-be")
            names.extend(struct.pack(">HI", len(encoded) // 2, zlib.crc32(encoded)) + encoded)
        return name_offsets[name]

    def data_offset(path: str) -> int:
        data = files[path]
        if path in compressed:
            data = struct.pack(">I", len(data)) + zlib.compress(data)
        data_offsets[path] = len(payload)
        payload.extend(struct.pack(">I", len(data)) + data)
        return data_offsets[path]

    nodes: list[bytes] = []
    stamp = b"" if version == 1 else struct.pack(">Q", 0)
    queue = [("", tree)]
    nodes.append(b"")  # the root, filled in below
    slots = {id(tree): 0}
    while queue:
        name, folder = queue.pop(0)
        first = len(nodes)
        children = sorted(folder.items())
        for _ in children:
            nodes.append(b"")
        for index, (child_name, child) in enumerate(children):
            slot = first + index
            if isinstance(child, dict):
                slots[id(child)] = slot
                queue.append((child_name, child))
            else:
                flags = (COMPRESSED if child in compressed else 0) | (COMPRESSED_ZSTD if child in zstd else 0)
                nodes[slot] = struct.pack(">IHHHI", name_offset(child_name), flags, 0, 0, data_offset(child)) + stamp
        nodes[slots[id(folder)]] = struct.pack(">IHII", name_offset(name), DIRECTORY, len(children), first) + stamp
    header_size = 24 if version == 3 else 20
    tree_bytes = b"".join(nodes)
    data_at = header_size
    names_at = data_at + len(payload)
    tree_at = names_at + len(names)
    header = b"qres" + struct.pack(">4I", version, tree_at, data_at, names_at)
    if version == 3:
        header += struct.pack(">I", 0)
    return header + bytes(payload) + bytes(names) + tree_bytes


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
