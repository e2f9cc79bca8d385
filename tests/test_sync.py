"""The Space sync, proven offline: a local bare repository enforces Hugging Face's rule (no binary
file as a plain Git blob; ``tests/hf_pre_receive.py`` as its pre-receive hook). Today's plain push
of this repository is rejected there; the sync workflow's own step, run verbatim with the Space's
URL redirected to that repository, is accepted, and a clone of it holds HEAD's files exactly.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from scripts.deploy.sync_space import attributes_line, lfs_paths
from scripts.paths import REPO

HOOK = Path(__file__).with_name("hf_pre_receive.py")
WORKFLOW = REPO / ".github" / "workflows" / "sync_to_hf.yml"
SPACE_ENV = {"HF_TOKEN": "hf_offline_test_token", "HF_SPACE_OWNER": "owner", "HF_SPACE_NAME": "denoiser"}
SPACE_URL = "https://user:{HF_TOKEN}@huggingface.co/spaces/{HF_SPACE_OWNER}/{HF_SPACE_NAME}".format(**SPACE_ENV)
REJECTED = "Your push was rejected because it contains binary files"


def git(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run git and capture its output as text."""
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=check)


@pytest.fixture
def space(tmp_path: Path) -> Path:
    """A bare repository that refuses binary blobs outside LFS, like Hugging Face."""
    bare = tmp_path / "space.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    git("config", "receive.shallowUpdate", "true", cwd=bare)  # a shallow CI clone may push too
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{HOOK}'\n")
    hook.chmod(0o755)
    return bare


def branches(bare: Path) -> str:
    """The refs of ``bare`` (empty when nothing was accepted)."""
    return git("for-each-ref", "--format=%(refname)", cwd=bare).stdout.strip()


def workflow_sync_step() -> dict:
    """The sync workflow's step that pushes to the Space."""
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["sync"]["steps"]
    return next(step for step in steps if "huggingface.co/spaces" in step.get("run", ""))


def head_files(tmp_path: Path) -> dict[str, bytes]:
    """Every file of this repository's HEAD, by path."""
    archive = tmp_path / "head.tar"
    git("archive", "--format=tar", f"--output={archive}", "HEAD", cwd=REPO)
    with tarfile.open(archive) as tree:
        return {member.name: tree.extractfile(member).read() for member in tree.getmembers() if member.isfile()}


def test_binary_files_are_found_by_gits_own_test() -> None:
    paths = lfs_paths(REPO)
    tracked = git("ls-files", cwd=REPO).stdout.splitlines()
    assert {path for path in tracked if path.endswith((".png", ".safetensors"))} <= set(paths)
    assert not [path for path in paths if path.endswith((".py", ".md", ".sh", ".json", ".yml"))], paths


def test_attribute_lines_match_exactly_their_path(tmp_path: Path) -> None:
    """Spaces and glob characters in a path are escaped, so the line matches that file and no other."""
    git("init", "--quiet", str(tmp_path), cwd=tmp_path)
    (tmp_path / ".gitattributes").write_text(attributes_line("odd dir/a b[1]*.png") + "\n")
    matched = git("check-attr", "filter", "--", "odd dir/a b[1]*.png", "odd dir/a b1x.png", cwd=tmp_path).stdout.splitlines()
    assert matched == ["odd dir/a b[1]*.png: filter: lfs", "odd dir/a b1x.png: filter: unspecified"]


def test_todays_plain_push_is_rejected(space: Path) -> None:
    """What the workflow did before, ``git push --force URL HEAD:main``, carries the PNGs and weights as blobs."""
    pushed = git("push", "--force", f"file://{space}", "HEAD:main", cwd=REPO, check=False)
    assert pushed.returncode != 0
    assert REJECTED in pushed.stderr and "models/weights/model_unet.safetensors: binary" in pushed.stderr, pushed.stderr
    assert branches(space) == ""


def test_the_workflows_sync_step_is_accepted_and_the_space_gets_head(space: Path, tmp_path: Path) -> None:
    step = workflow_sync_step()
    env = {
        **os.environ, **SPACE_ENV,
        # The step's own URL, with its token, is sent to the local repository instead.
        "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.file://{space}.insteadOf", "GIT_CONFIG_VALUE_0": SPACE_URL,
    }
    ran = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert branches(space) == "refs/heads/main"
    assert SPACE_ENV["HF_TOKEN"] not in ran.stdout + ran.stderr

    clone = tmp_path / "clone"
    lfs_filter = ("-c", "filter.lfs.process=git-lfs filter-process", "-c", "filter.lfs.required=true")
    git(*lfs_filter, "clone", "--quiet", f"file://{space}", str(clone), cwd=tmp_path)
    expected = head_files(tmp_path)
    stored = git("lfs", "ls-files", "--name-only", cwd=clone).stdout.split()
    assert sorted(stored) == lfs_paths(REPO)
    for path, content in expected.items():
        assert (clone / path).read_bytes() == content, path
    cloned = {str(p.relative_to(clone)) for p in clone.rglob("*") if p.is_file() and ".git" not in p.relative_to(clone).parts[:1]}
    assert cloned - set(expected) == {".gitattributes"}
