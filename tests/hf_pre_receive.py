"""A pre-receive hook enforcing Hugging Face's rule on a local bare repository.

Hugging Face rejects a push carrying a binary file, or a file over 10 MB, as a plain Git blob
("Your push was rejected because it contains binary files"); such files must be LFS (or Xet)
objects. This hook refuses every pushed blob that is binary by git's own test (a NUL byte in
its first 8,000 bytes) or larger than 10 MB, unless it is a Git LFS pointer whose object the
push uploaded into the repository's ``lfs/objects``. It reads ``old new ref`` lines on stdin,
as git gives them, and exits 1 with the reasons on stderr to refuse the push.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

LARGE_BYTES = 10 * 1000 * 1000
BINARY_PROBE = 8000
ZERO = "0" * 40
POINTER = re.compile(rb"^version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize \d+\n")


def git(*args: str) -> str:
    """Run git in the repository receiving the push (the hook's working directory)."""
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def pushed_blobs(new_tips: list[str]) -> dict[str, str]:
    """Blob id -> path of every blob reachable from the pushed tips and not from the existing refs."""
    listed = git("rev-list", "--objects", *new_tips, "--not", "--all").splitlines()
    named = dict(line.split(" ", 1) for line in listed if " " in line)
    kinds = subprocess.run(["git", "cat-file", "--batch-check=%(objectname) %(objecttype)"],
                           input="\n".join(named), capture_output=True, text=True, check=True).stdout
    return {sha: named[sha] for sha, kind in (line.split() for line in kinds.splitlines()) if kind == "blob"}


def problem(blob: bytes, lfs_dir: Path) -> str | None:
    """Why Hugging Face would refuse this blob, or None."""
    pointer = POINTER.match(blob)
    if pointer is not None:
        oid = pointer.group(1).decode()
        stored = lfs_dir / oid[:2] / oid[2:4] / oid
        return None if stored.is_file() else f"LFS object {oid} was not uploaded"
    if len(blob) > LARGE_BYTES:
        return "larger than 10 MB"
    if b"\0" in blob[:BINARY_PROBE]:
        return "binary"
    return None


def main() -> int:
    """Check the pushed blobs; exit 1 (refusing the push) if any breaks the rule."""
    tips = [new for _, new, _ in (line.split() for line in sys.stdin if line.strip()) if new != ZERO]
    lfs_dir = Path(os.environ.get("GIT_DIR", ".")).resolve() / "lfs" / "objects"
    refused = []
    for sha, path in sorted(pushed_blobs(tips).items(), key=lambda item: item[1]) if tips else []:
        blob = subprocess.run(["git", "cat-file", "blob", sha], capture_output=True, check=True).stdout
        reason = problem(blob, lfs_dir)
        if reason:
            refused.append(f"  {path}: {reason}")
    if refused:
        print("Your push was rejected because it contains binary files.\n"
              "Store them with Git LFS or Xet (https://huggingface.co/docs/hub/xet):\n" + "\n".join(refused), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
