"""Read entries out of an Enlightenment EET archive (``.edj`` themes and backgrounds).

An archive starts with the magic ``0x1ee70f42``, then big-endian 32-bit counts of directory
and dictionary entries. Each directory entry is six 32-bit integers: data offset, stored size,
uncompressed size, name offset, name size (with its NUL) and flags (bit 0 compressed, bit 1
ciphered, bit 2 alias; bits 3-10 the compression type). Only entries stored as they are can be
read here: an Enlightenment background's ``edje/images/0`` is its picture as a plain JPEG file,
while compressed entries (``edje_sources``: LZ4) and ciphered ones are refused.

    python -m scripts.corpus.eet ARCHIVE.edj                  # list the entries inside
"""
from __future__ import annotations

import argparse
import struct
from pathlib import Path

MAGIC = 0x1EE70F42
HEADER = struct.Struct(">3I")
DIRECTORY_ENTRY = struct.Struct(">6I")
COMPRESSED, CIPHERED, ALIAS = 0x1, 0x2, 0x4


class EetError(ValueError):
    """The bytes are not a readable EET archive, or an entry cannot be read by this reader."""


class EetArchive:
    """The entries of one EET archive, by name (``edje/images/0``)."""

    def __init__(self, data: bytes) -> None:
        if len(data) < HEADER.size:
            raise EetError("not an EET archive (too short)")
        magic, count, _ = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise EetError(f"not an EET archive (magic {magic:#010x})")
        if HEADER.size + count * DIRECTORY_ENTRY.size > len(data):
            raise EetError(f"directory of {count} entries runs past the end of the archive")
        self.data = data
        self.entries: dict[str, tuple[int, int, int]] = {}
        for index in range(count):
            offset, size, _, name_offset, name_size, flags = DIRECTORY_ENTRY.unpack_from(
                data, HEADER.size + index * DIRECTORY_ENTRY.size)
            if offset + size > len(data) or name_offset + name_size > len(data):
                raise EetError(f"directory entry {index} points past the end of the archive")
            name = data[name_offset:name_offset + name_size].rstrip(b"\0").decode("utf-8")
            self.entries[name] = (offset, size, flags)

    @classmethod
    def open(cls, path: Path) -> EetArchive:
        """Parse the archive stored at ``path``."""
        return cls(Path(path).read_bytes())

    def names(self) -> list[str]:
        """Every entry in the archive, sorted."""
        return sorted(self.entries)

    def read(self, name: str) -> bytes:
        """The bytes of entry ``name`` (``KeyError`` if absent; ``EetError`` if compressed, ciphered or an alias)."""
        offset, size, flags = self.entries[name]
        if flags & (COMPRESSED | CIPHERED | ALIAS):
            raise EetError(f"{name}: compressed, ciphered or alias entries are not supported (flags {flags:#x})")
        return self.data[offset:offset + size]


def main(argv: list[str] | None = None) -> None:
    """List the entries of an archive with their stored sizes and flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", type=Path)
    archive = EetArchive.open(parser.parse_args(argv).archive)
    for name in archive.names():
        _, size, flags = archive.entries[name]
        print(f"{size:>10}  {flags:#06x}  {name}")


if __name__ == "__main__":
    main()
