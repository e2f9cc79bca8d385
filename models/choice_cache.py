"""The precision choice made once per machine: serialised across processes, then kept on disk.

Every worker of a server (and the evaluation, and the tests) asks ``cached_choice`` with the same
key: the graphs' identity (model and weights digest), the torch version, the CPU (model name and
a digest of its flags), the threads and tile batch it serves with, and the choice's own rule
settings. Under an exclusive ``flock`` on the cache folder the first caller measures (and warms
its graph up) while the others wait idle, then finds the stored decision: so no worker times its
graphs while another is loading or timing on the same cores, and a restart agrees and skips the
timing. The folder is ``DENOISER_CACHE_DIR``, else ``$XDG_CACHE_HOME/denoiser-server`` (default
``~/.cache``), else a folder in the system's temp directory when that is not writable.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .precision import PrecisionChoice, cpu_flags, cpu_name

CACHE_ENV = "DENOISER_CACHE_DIR"
LOCK_FILE = "precision.lock"


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where decisions are kept: ``DENOISER_CACHE_DIR``, the user's cache folder, or a temp folder."""
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV])
    base = Path(environ.get("XDG_CACHE_HOME") or Path(environ.get("HOME") or tempfile.gettempdir()) / ".cache")
    return base / "denoiser-server"


def writable_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``default_cache_dir``, created; a per-user folder under the temp directory if it cannot be."""
    folder = default_cache_dir(environ)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"denoiser-server-{os.getuid()}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def machine_key(graphs_id: str, threads: int, batch_shape: tuple[int, ...], rule: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a timing decision depends on, as a JSON-ready dictionary."""
    return {
        "graphs": graphs_id,
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_flags_sha256": hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest(),
        "threads": threads,
        "batch": list(batch_shape),
        "rule": dict(rule),
    }


def entry_path(folder: Path, key: Mapping[str, Any]) -> Path:
    """The file holding the decision for ``key``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return folder / f"precision-{digest}.json"


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold the folder's lock file exclusively (other processes block here until it is released)."""
    with open(folder / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_entry(path: Path, key: Mapping[str, Any]) -> PrecisionChoice | None:
    """The stored decision at ``path`` if it is for exactly ``key`` and readable, else ``None``."""
    try:
        stored = json.loads(path.read_text())
        if stored["key"] != key:
            return None
        return PrecisionChoice(**stored["choice"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_entry(path: Path, key: Mapping[str, Any], choice: PrecisionChoice) -> None:
    """Store ``choice`` for ``key`` atomically (write a temp file, then rename)."""
    record = {"key": dict(key), "choice": dataclasses.asdict(choice), "decided_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(temporary, path)


def cached_choice(
    key: Mapping[str, Any], decide: Callable[[], PrecisionChoice], after: Callable[[PrecisionChoice], None],
    folder: Path | None = None,
) -> tuple[PrecisionChoice, Path]:
    """The stored decision for ``key``, or ``decide()``'s, stored; ``after`` runs on it under the same lock.

    Returns the choice (its reason prefixed "cached:" when it was read back) and the entry's path.
    """
    folder = folder or writable_cache_dir()
    path = entry_path(folder, key)
    with exclusive(folder):
        stored = read_entry(path, key)
        if stored is not None:
            choice = dataclasses.replace(stored, reason=f"cached: {stored.reason}")
        else:
            choice = decide()
            write_entry(path, key, choice)
        after(choice)
    return choice, path
