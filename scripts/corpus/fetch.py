"""Fetch the public packages the corpus photographs come from, and read files out of them.

Debian packages come through ``apt-get download NAME=VERSION`` (the version the corpus was
made from; when the configured archive no longer has it, whatever version it offers) and are
unpacked with ``dpkg -x``. A package of another Debian release than the system's (a source
with a ``suite``, e.g. trixie) is fetched through a private apt configuration under the cache
(its own ``sources.list``, lists and cache), so the system's sources are neither read nor
changed. Python wheels come through ``pip download --no-deps`` and are read as zip files.
Files inside a Qt ``.rcc`` bundle or an Enlightenment ``.edj`` archive are read with their
readers. Everything is kept under one cache folder, so a second run downloads nothing.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from scripts.corpus.eet import EetArchive
from scripts.corpus.rcc import RccBundle

# A wheel's data files do not depend on the interpreter; asking for the wheels of one Python
# that every listed release supports keeps the download independent of the running one.
WHEEL_PYTHON = "3.11"
UNPACKED_STAMP = ".unpacked"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
ARCHIVE_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Readers of the containers a photograph can sit in, by the container's file suffix.
CONTAINERS = {".rcc": RccBundle, ".edj": EetArchive}


class FetchError(RuntimeError):
    """A source package could not be downloaded or unpacked."""


@dataclass(frozen=True)
class Source:
    """One package the corpus draws on: a Debian package (``deb``) or a PyPI wheel (``wheel``).

    ``suite`` names the Debian release a package comes from when it is not the system's.
    """

    name: str
    kind: str
    version: str
    suite: str | None = None


@dataclass(frozen=True)
class Fetched:
    """A downloaded package: its file and the version it really is."""

    source: Source
    file: Path
    version: str


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a command quietly; its output comes back for error messages."""
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def deb_version(deb: Path) -> str:
    """The ``Version`` field of a .deb file."""
    done = run(["dpkg-deb", "--field", str(deb), "Version"], deb.parent)
    if done.returncode != 0 or not done.stdout.strip():
        raise FetchError(f"{deb} is not a readable Debian package (an interrupted download?); delete it and run again")
    return done.stdout.strip()


def deb_prefix(name: str, version: str) -> str:
    """How ``apt-get download`` names a package's file, up to the architecture (epoch colon as %3a)."""
    return f"{name}_{version.replace(':', '%3a')}_"


def find_deb(folder: Path, source: Source) -> Path | None:
    """The cached .deb of ``source``: its exact version if present, else any version of the package."""
    debs = sorted(folder.glob(f"{source.name}_*.deb"))
    exact = [deb for deb in debs if deb.name.startswith(deb_prefix(source.name, source.version))]
    return (exact or debs)[-1] if debs else None


def private_apt(root: Path, suite: str) -> list[str]:
    """apt-get options that use only a configuration under ``root`` listing Debian ``suite``: sources, lists, cache."""
    etc, lists, cache = root / "etc", root / "lists", root / "cache"
    for folder in (etc / "sources.list.d", lists / "partial", cache / "archives" / "partial"):
        folder.mkdir(parents=True, exist_ok=True)
    (etc / "sources.list").write_text(f"deb [signed-by={ARCHIVE_KEYRING}] {DEBIAN_MIRROR} {suite} main\n")
    return ["-o", f"Dir::Etc::SourceList={etc / 'sources.list'}", "-o", f"Dir::Etc::SourceParts={etc / 'sources.list.d'}",
            "-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={cache}"]


def download_deb(folder: Path, source: Source, apt_root: Path) -> Path:
    """``apt-get download`` the package into ``folder``: the wanted version, else the archive's.

    A source with a suite is fetched through a private configuration under ``apt_root/SUITE``,
    whose package lists are brought up to date first.
    """
    folder.mkdir(parents=True, exist_ok=True)
    found = find_deb(folder, source)
    if found is not None:
        return found
    if shutil.which("apt-get") is None:
        raise FetchError(
            f"{source.name}: apt-get is missing (Debian and Ubuntu have it); put {deb_prefix(source.name, source.version)}*.deb "
            f"from a Debian mirror into {folder} and run again"
        )
    options = []
    if source.suite:
        options = private_apt(apt_root / source.suite, source.suite)
        done = run(["apt-get", *options, "update"], folder)
        if done.returncode != 0:
            raise FetchError(f"apt-get update for Debian {source.suite} failed: {done.stderr.strip()}")
    errors = []
    for wanted in (f"{source.name}={source.version}", source.name):
        done = run(["apt-get", *options, "download", wanted], folder)
        if done.returncode == 0 and (found := find_deb(folder, source)) is not None:
            return found
        errors.append(done.stderr.strip())
    raise FetchError(f"apt-get download {source.name} failed (run `apt-get update` first?): {errors[-1]}")


def unpack_deb(deb: Path, folder: Path) -> Path:
    """``dpkg -x`` a package into ``folder`` once (a stamp marks a finished unpacking)."""
    if not (folder / UNPACKED_STAMP).exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        done = run(["dpkg", "-x", str(deb), str(folder)], folder)
        if done.returncode != 0:
            raise FetchError(f"dpkg -x {deb.name} failed: {done.stderr.strip()}")
        (folder / UNPACKED_STAMP).touch()
    return folder


def wheel_prefix(name: str, version: str) -> str:
    """How a wheel's file name starts (the project name normalised as in wheel names)."""
    return f"{name.replace('-', '_').lower()}-{version}-"


def download_wheel(folder: Path, source: Source) -> Path:
    """``pip download --no-deps`` the wheel of ``NAME==VERSION`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = wheel_prefix(source.name, source.version)
    for wheel in sorted(folder.glob("*.whl")):
        if wheel.name.lower().startswith(prefix):
            return wheel
    done = run([
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
        "--only-binary=:all:", "--python-version", WHEEL_PYTHON, "--dest", str(folder),
        f"{source.name}=={source.version}",
    ], folder)
    found = [wheel for wheel in sorted(folder.glob("*.whl")) if wheel.name.lower().startswith(prefix)]
    if done.returncode != 0 or not found:
        raise FetchError(f"pip download {source.name}=={source.version} failed: {done.stderr.strip()[-2000:]}")
    return found[0]


class SourceCache:
    """Downloads and unpacked packages under one folder: ``debs/``, ``wheels/``, ``unpacked/``, ``apt/``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()  # absolute: apt-get, dpkg and pip run inside its subfolders
        self.fetched: dict[Source, Fetched] = {}

    def fetch(self, source: Source) -> Fetched:
        """Download ``source`` (once) and tell which version it really is."""
        if source not in self.fetched:
            if source.kind == "deb":
                deb = download_deb(self.root / "debs", source, self.root / "apt")
                self.fetched[source] = Fetched(source, deb, deb_version(deb))
            elif source.kind == "wheel":
                wheel = download_wheel(self.root / "wheels", source)
                self.fetched[source] = Fetched(source, wheel, wheel.name.split("-")[1])
            else:
                raise ValueError(f"{source.name}: unknown source kind {source.kind!r}")
        return self.fetched[source]

    def read(self, source: Source, path: str, member: str | None = None) -> bytes:
        """The bytes of ``path`` in the package (for an .rcc bundle or .edj archive, of ``member`` inside it)."""
        fetched = self.fetch(source)
        if source.kind == "wheel":
            with zipfile.ZipFile(fetched.file) as wheel:
                data = wheel.read(path)
        else:
            data = (unpack_deb(fetched.file, self.root / "unpacked" / fetched.file.stem) / path).read_bytes()
        return data if member is None else read_member(data, path, member)


def read_member(data: bytes, path: str, member: str) -> bytes:
    """The bytes of ``member`` inside the container file ``path`` (its reader chosen by the suffix)."""
    reader = CONTAINERS.get(Path(path).suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: no reader for members of {Path(path).suffix!r} files; known: {sorted(CONTAINERS)}")
    return reader(data).read(member)
