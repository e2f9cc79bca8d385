"""Small fake packages for the corpus tools' tests: Qt .rcc bundles, EET archives, wheels and Debian packages."""
from __future__ import annotations

import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest

from scripts.corpus.eet import DIRECTORY_ENTRY, HEADER, MAGIC
from scripts.corpus.rcc import COMPRESSED, COMPRESSED_ZSTD, DIRECTORY


def build_rcc(
    files: dict[str, bytes], compressed: set[str] = frozenset(), version: int = 3, zstd: set[str] = frozenset()
) -> bytes:
    """A Qt resource bundle holding ``files`` (path -> bytes), laid out as ``rcc`` lays it out.

    Nodes are numbered breadth first, each folder's children contiguous; names are stored once
    each, data one entry per file (``qCompress`` framing for the ``compressed`` paths).
    """
    tree: dict = {}
    for path in files:
        *folders, leaf = path.split("/")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = path
    names, name_offsets = bytearray(), {}
    payload = bytearray()

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
        offset = len(payload)
        payload.extend(struct.pack(">I", len(data)) + data)
        return offset

    stamp = b"" if version == 1 else struct.pack(">Q", 0)
    nodes: list[bytes] = [b""]  # the root's slot, filled when the root is taken from the queue
    queue = [("", tree, 0)]
    while queue:
        name, folder, slot = queue.pop(0)
        first = len(nodes)
        children = sorted(folder.items())
        nodes.extend(b"" for _ in children)
        for index, (child_name, child) in enumerate(children):
            if isinstance(child, dict):
                queue.append((child_name, child, first + index))
            else:
                flags = (COMPRESSED if child in compressed else 0) | (COMPRESSED_ZSTD if child in zstd else 0)
                entry = struct.pack(">IHHHI", name_offset(child_name), flags, 0, 0, data_offset(child))
                nodes[first + index] = entry + stamp
        nodes[slot] = struct.pack(">IHII", name_offset(name), DIRECTORY, len(children), first) + stamp
    data_at = 24 if version == 3 else 20
    names_at = data_at + len(payload)
    tree_at = names_at + len(names)
    header = b"qres" + struct.pack(">4I", version, tree_at, data_at, names_at)
    if version == 3:
        header += struct.pack(">I", 0)
    return header + bytes(payload) + bytes(names) + b"".join(nodes)


def build_eet(entries: dict[str, bytes], flags: dict[str, int] | None = None) -> bytes:
    """An EET archive holding ``entries`` (name -> bytes), laid out as ``eet`` lays it out.

    Header and directory first, then the NUL-terminated names, then the data; ``flags`` sets an
    entry's flag word (compressed, ciphered...) without changing its bytes.
    """
    flags = flags or {}
    names = b"".join(name.encode() + b"\0" for name in entries)
    names_at = HEADER.size + len(entries) * DIRECTORY_ENTRY.size
    data_at = names_at + len(names)
    directory, name_offset, data_offset = b"", names_at, data_at
    for name, data in entries.items():
        directory += DIRECTORY_ENTRY.pack(data_offset, len(data), len(data), name_offset, len(name) + 1, flags.get(name, 0))
        name_offset += len(name) + 1
        data_offset += len(data)
    return HEADER.pack(MAGIC, len(entries), 0) + directory + names + b"".join(entries.values())


def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A wheel file named as pip names it, holding ``files`` (path -> bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def make_deb(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A Debian package built with ``dpkg-deb``, named as ``apt-get download`` names it (skips without dpkg-deb)."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is missing (Debian and Ubuntu have it)")
    tree = folder / f"{name}-tree"
    for path, data in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(data)
    (tree / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: Test <test@example.org>\n"
        "Description: a package made by a test\n"
    )
    folder.mkdir(parents=True, exist_ok=True)
    deb = folder / f"{name}_{version.replace(':', '%3a')}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True, capture_output=True)
    shutil.rmtree(tree)
    return deb
