"""ruff (lint and import order, configured in pyproject.toml) is clean over the whole repository."""
from __future__ import annotations

import subprocess
import sys

from scripts.paths import REPO


def test_ruff_finds_nothing() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
