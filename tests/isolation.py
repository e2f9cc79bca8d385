"""Keep the test session inside the repository: refuse to read anything under ``../shared``.

``../shared/corpus`` exists only on this project's own machines; a test that read it (directly
or through a tool's default folder) would pass here and fail in a fresh clone. An audit hook
(PEP 578) sees every ``open``, ``os.listdir`` and ``os.scandir`` of the test process and
raises ``OutsideRepository`` for a path under the shared folder, so such a test fails here too.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from scripts.paths import SHARED_CORPUS

SHARED = SHARED_CORPUS.parent
WATCHED_EVENTS = {"open", "os.listdir", "os.scandir"}


class OutsideRepository(RuntimeError):
    """A test read a folder that a fresh clone does not have."""


def under(path: object, folder: Path) -> bool:
    """Whether ``path`` (str, bytes or path-like; relative to the working folder) lies in ``folder``."""
    if isinstance(path, int) or path is None:
        return False
    text = os.fsdecode(os.fspath(path))
    return Path(os.path.abspath(text)).is_relative_to(folder)


def refuse_shared(event: str, args: tuple) -> None:
    """The audit hook: reading under ``SHARED`` is an error."""
    if event in WATCHED_EVENTS and args and under(args[0], SHARED):
        raise OutsideRepository(
            f"{event}({args[0]!r}): tests must not read {SHARED}, which a fresh clone does not have; "
            "build the images in a temporary folder (tests/photos.py)"
        )


def install() -> None:
    """Add the hook to this process (an audit hook stays for the life of the process)."""
    sys.addaudithook(refuse_shared)
