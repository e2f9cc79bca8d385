"""The test tiers (pyproject.toml's markers, set by tests/conftest.py): a test that needs a
server, a browser or podman is never in the fast ``unit`` tier, and markers are checked."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.paths import REPO
from tests.conftest import TIERS

# A plugin for the inner pytest: prints every collected test with its tier markers.
REPORTER = f"""
def pytest_collection_finish(session):
    for item in session.items:
        print("TIERS", item.nodeid, ",".join(sorted(m.name for m in item.iter_markers() if m.name in {(*TIERS, "unit")!r})))
"""


def run_collection(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``pytest --collect-only`` with ``args``."""
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_a_test_without_tier_fixtures_is_unit(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("server") is None


def test_server_browser_and_container_tests_are_not_unit(tmp_path: Path) -> None:
    """Tests using the model store, the session server or the browser (directly or through another fixture) leave the unit tier."""
    (tmp_path / "tier_reporter.py").write_text(REPORTER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    result = run_collection("-p", "tier_reporter", "tests/test_faults.py", "tests/test_browser.py", "tests/test_container.py",
                            "tests/test_tiers.py", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    tiers = {}
    for line in result.stdout.splitlines():
        if line.startswith("TIERS "):
            _, test, names = line.split(" ")
            tiers[test] = set(names.split(","))
    by_file = {name: [found for test, found in tiers.items() if test.startswith(f"tests/{name}")]
               for name in ("test_faults.py", "test_browser.py", "test_container.py", "test_tiers.py")}
    assert all(by_file.values()), by_file
    assert all(found == {"server"} for found in by_file["test_faults.py"])
    assert all(found == {"container"} for found in by_file["test_container.py"])
    assert all("server" in found for found in by_file["test_browser.py"])
    assert {"server", "browser"} in by_file["test_browser.py"]
    assert all(found == {"unit"} for found in by_file["test_tiers.py"])


def test_an_unregistered_marker_is_refused(tmp_path: Path) -> None:
    (tmp_path / "test_typo.py").write_text("import pytest\n\n@pytest.mark.sever\ndef test_x():\n    pass\n")
    result = run_collection("-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path), str(tmp_path), cwd=tmp_path)
    assert result.returncode != 0 and "'sever' not found in `markers`" in result.stdout + result.stderr
