"""Push the checked-out commit to a Hugging Face Space in the form Hugging Face accepts.

Hugging Face refuses a push that carries a binary file (or one over 10 MB) as a plain Git blob:
"Your push was rejected because it contains binary files". This repository keeps its PNGs and
safetensors weights as plain blobs, so its history cannot be pushed as it is. Instead, this
script makes one snapshot commit of HEAD's tree in a scratch repository, stores every binary or
large file there as a Git LFS object (``.gitattributes`` lists them by path), and force-pushes
that commit; git-lfs's pre-push hook uploads the objects first. The Space builds only what HEAD
holds, so it loses nothing but the history.

    python3 scripts/deploy/sync_space.py https://user:TOKEN@huggingface.co/spaces/OWNER/NAME [--branch main]

Runs with the standard library alone (the sync workflow's runner has git and git-lfs).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

LARGE_BYTES = 10 * 1000 * 1000  # Hugging Face's limit for a file outside LFS/Xet
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
GLOB_SPECIAL = re.compile(r"([*?\[\]\\!#])")


def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run git in ``cwd`` and return its standard output; raise with its error output if it fails."""
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:2])} failed ({result.returncode}):\n{result.stderr.strip()}")
    return result.stdout


def lfs_paths(repo: Path, rev: str = "HEAD") -> list[str]:
    """Files of ``rev`` that must be LFS objects: binary by git's own test, or over 10 MB."""
    numstat = git("diff", "--numstat", "-z", "--no-renames", EMPTY_TREE, rev, cwd=repo).split("\0")
    binary = {entry.split("\t", 2)[2] for entry in numstat if entry.startswith("-\t-\t")}
    sizes = git("ls-tree", "-r", "-l", "-z", rev, cwd=repo).split("\0")
    large = {entry.split("\t", 1)[1] for entry in sizes if entry and entry.split()[3].isdigit() and int(entry.split()[3]) > LARGE_BYTES}
    return sorted(binary | large)


def attributes_line(path: str) -> str:
    """A ``.gitattributes`` line storing exactly ``path`` (from the root) in LFS."""
    pattern = GLOB_SPECIAL.sub(r"\\\1", path).replace(" ", "[[:space:]]")
    return f"/{pattern} filter=lfs diff=lfs merge=lfs -text"


def snapshot(repo: Path, work: Path, rev: str = "HEAD") -> tuple[str, list[str]]:
    """Commit ``rev``'s tree in a new repository at ``work`` with its binary files in LFS; return (commit message, LFS paths)."""
    archive = work.parent / "tree.tar"
    git("archive", "--format=tar", f"--output={archive}", rev, cwd=repo)
    with tarfile.open(archive) as tree:
        tree.extractall(work, filter="tar")
    archive.unlink()
    paths = lfs_paths(repo, rev)
    git("init", "--quiet", cwd=work)
    git("lfs", "install", "--local", cwd=work)
    attributes = work / ".gitattributes"
    existing = attributes.read_text() if attributes.exists() else ""
    attributes.write_text(existing + "".join(attributes_line(path) + "\n" for path in paths))
    git("add", "--all", cwd=work)
    stored = sorted(git("lfs", "ls-files", "--name-only", cwd=work).splitlines())
    if stored != paths:
        raise RuntimeError(f"git-lfs stored {stored}, expected {paths}")
    source = git("log", "-1", "--format=%H%n%an%n%ae%n%aI", rev, cwd=repo).splitlines()
    message = f"Denoiser-Server {source[0]}\n\nA snapshot of that commit; binary files are Git LFS objects."
    author = {**os.environ, "GIT_AUTHOR_NAME": source[1], "GIT_AUTHOR_EMAIL": source[2], "GIT_AUTHOR_DATE": source[3],
              "GIT_COMMITTER_NAME": source[1], "GIT_COMMITTER_EMAIL": source[2]}
    git("commit", "--quiet", "--no-verify", "-m", message, cwd=work, env=author)
    return message, paths


def sync(repo: Path, remote: str, branch: str = "main") -> list[str]:
    """Force-push a snapshot of ``repo``'s HEAD, binaries in LFS, to ``branch`` of ``remote``; return the LFS paths."""
    with tempfile.TemporaryDirectory(prefix="space-sync-") as scratch:
        work = Path(scratch) / "space"
        work.mkdir()
        _, paths = snapshot(repo, work)
        # A named remote: git-lfs's pre-push hook, which uploads the LFS objects before git sends
        # the commit, finds the LFS endpoint (and any url.insteadOf rewrite) through it. The
        # scratch repository holding the URL is deleted with the folder.
        git("remote", "add", "space", remote, cwd=work)
        git("push", "--force", "space", f"HEAD:refs/heads/{branch}", cwd=work)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Command line: sync this checkout's HEAD to the Space at the given remote URL."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("remote", help="the Space's git URL, credentials included")
    parser.add_argument("--branch", default="main")
    args = parser.parse_args(argv)
    repo = Path(git("rev-parse", "--show-toplevel", cwd=Path.cwd()).strip())
    try:
        paths = sync(repo, args.remote, args.branch)
    except RuntimeError as failed:
        print(f"sync failed: {failed}", file=sys.stderr)
        return 1
    print(f"pushed a snapshot of HEAD with {len(paths)} file(s) in LFS: {', '.join(paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
