"""Read files out of a Qt binary resource bundle (``.rcc``, format versions 1 to 3).

A bundle starts with a 20-byte header (``qres``, then big-endian version, tree, data and
names offsets; version 3 adds 4 bytes of flags). The tree is an array of nodes, the root
first: a name offset, flags, then either a child count and the index of the first child
(directories) or a locale and a data offset (files); versions 2 and up add an 8-byte
modification time. A name is a 16-bit length, a 32-bit hash and UTF-16BE text. A file's data
is a 32-bit length and the bytes; zlib-compressed ones (flag 1) start with their 32-bit
uncompressed length (``qCompress``). Zstandard entries (flag 4) are refused.

    python -m scripts.corpus.rcc BUNDLE.rcc                   # list the files inside
"""
from __future__ import annotations

import argparse
import struct
import zlib
from pathlib import Path

MAGIC = b"qres"
COMPRESSED, DIRECTORY, COMPRESSED_ZSTD = 0x01, 0x02, 0x04


class RccError(ValueError):
    """The bytes are not a readable Qt resource bundle."""


class RccBundle:
    """The files of one ``.rcc`` bundle, by their path inside it (``a/b/c.webp``)."""

    def __init__(self, data: bytes) -> None:
        if data[:4] != MAGIC:
            raise RccError("not a Qt resource bundle (no 'qres' magic)")
        self.data = data
        self.version, self.tree, self.payload, self.names = struct.unpack_from(">4I", data, 4)
        if not 1 <= self.version <= 3:
            raise RccError(f"unsupported rcc format version {self.version}")
        self.node_size = 14 if self.version == 1 else 22
        self.entries = dict(self._walk(0, ""))

    @classmethod
    def open(cls, path: Path) -> RccBundle:
        """Parse the bundle stored at ``path``."""
        return cls(Path(path).read_bytes())

    def _node(self, index: int) -> tuple[int, int, int, int]:
        """Tree node ``index`` as (name offset, flags, child count or locale, first child or data offset)."""
        return struct.unpack_from(">IHII", self.data, self.tree + index * self.node_size)

    def _name(self, offset: int) -> str:
        (length,) = struct.unpack_from(">H", self.data, self.names + offset)
        start = self.names + offset + 6
        return self.data[start:start + 2 * length].decode("utf-16-be")

    def _walk(self, index: int, prefix: str) -> list[tuple[str, tuple[int, int]]]:
        """(path, (flags, data offset)) of every file below the directory node ``index``."""
        _, _, count, first = self._node(index)
        found = []
        for child in range(first, first + count):
            name_offset, flags, _, offset = self._node(child)
            path = prefix + self._name(name_offset)
            found += self._walk(child, f"{path}/") if flags & DIRECTORY else [(path, (flags, offset))]
        return found

    def paths(self) -> list[str]:
        """Every file in the bundle, sorted."""
        return sorted(self.entries)

    def read(self, path: str) -> bytes:
        """The uncompressed bytes of the file at ``path`` (``KeyError`` if absent)."""
        flags, offset = self.entries[path.strip("/")]
        (size,) = struct.unpack_from(">I", self.data, self.payload + offset)
        start = self.payload + offset + 4
        blob = self.data[start:start + size]
        if flags & COMPRESSED_ZSTD:
            raise RccError(f"{path}: zstd-compressed entries are not supported")
        if flags & COMPRESSED:
            (expected,) = struct.unpack_from(">I", blob)
            blob = zlib.decompress(blob[4:])
            if len(blob) != expected:
                raise RccError(f"{path}: {len(blob)} bytes after decompression, header says {expected}")
        return blob


def main(argv: list[str] | None = None) -> None:
    """List the files of a bundle with their sizes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    bundle = RccBundle.open(parser.parse_args(argv).bundle)
    for path in bundle.paths():
        print(f"{len(bundle.read(path)):>10}  {path}")


if __name__ == "__main__":
    main()
