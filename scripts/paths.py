"""Where the repository keeps things, and which photo corpus the data tools read.

The corpus is a folder with ``train/`` and ``val/`` photographs. The tools take the first of:

1. ``../shared/corpus`` beside the repository (this project's own machines);
2. ``data/corpus``, rebuilt from its public sources by ``python -m scripts.corpus.get``;

and otherwise stop with a message that says how to get one, or how to point them at any
folder of photographs instead (``--train-src/--val-src``, ``--images``).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data"
CACHE_DIR = DATA_DIR / "cache"
RUNS_DIR = REPO / "runs"
IMAGES_DIR = REPO / "images"
MODEL_STORE = REPO / "model_store"
CONFIG = REPO / "config.properties"
SHARED_CORPUS = REPO.parent / "shared" / "corpus"
LOCAL_CORPUS = DATA_DIR / "corpus"
CORPUS_CANDIDATES = (SHARED_CORPUS, LOCAL_CORPUS)
SPLITS = ("train", "val")
# Present in a corpus folder while scripts.corpus.get is still filling it.
INCOMPLETE_MARKER = ".incomplete"


class CorpusMissing(FileNotFoundError):
    """No usable photo corpus was found."""


def corpus_dir(candidates: Sequence[Path] | None = None) -> Path:
    """The first candidate folder (default ``CORPUS_CANDIDATES``) that holds a complete corpus."""
    candidates = CORPUS_CANDIDATES if candidates is None else candidates
    for folder in candidates:
        if (folder / INCOMPLETE_MARKER).exists():
            raise CorpusMissing(
                f"{folder} is only partly built: run `python -m scripts.corpus.get --out {folder}` again to finish it"
            )
        if all((folder / split).is_dir() for split in SPLITS):
            return folder
    tried = ", ".join(str(folder) for folder in candidates)
    raise CorpusMissing(
        f"no photo corpus (looked for train/ and val/ in {tried}). Rebuild it from its public sources with "
        "`python -m scripts.corpus.get` (into data/corpus), or use any folders of photographs, e.g. BSD500: "
        "`--train-src DIR --val-src DIR` (train), `--images DIR` (evaluate, collage, baselines), "
        "`--image FILE` (benchmark)"
    )


def corpus_split(split: str, candidates: Sequence[Path] | None = None) -> Path:
    """The ``train`` or ``val`` folder of the corpus that ``corpus_dir`` finds."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    return corpus_dir(candidates) / split


def split_argument(parser: argparse.ArgumentParser, given: Path | None, split: str) -> Path:
    """``given`` when the user named a folder, else the corpus split; without a corpus the command stops with why."""
    if given is not None:
        return given
    try:
        return corpus_split(split)
    except CorpusMissing as missing:
        parser.error(str(missing))


def print_paths(make: Callable[[], Iterable[Path]]) -> int:
    """A command's ending: print each path ``make()`` yields and return 0, or report a missing input and return 1."""
    try:
        for path in make():
            print(path)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
