"""scripts/training/train_all.sh's final stage hands each model its ladder width, with a stand-in Python that records its arguments."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from scripts.paths import REPO

SCRIPT = REPO / "scripts" / "training" / "train_all.sh"
RECORDER = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$RECORD"
"""


def run_script(tmp_path, **environment: str) -> subprocess.CompletedProcess:
    if shutil.which("timeout") is None:
        pytest.skip("coreutils' timeout is missing")
    corpus = tmp_path / "corpus"
    for split in ("train", "val"):
        (corpus / split).mkdir(parents=True)
    python = tmp_path / "python"
    python.write_text(RECORDER)
    python.chmod(0o755)
    env = {**os.environ, "PYTHON": str(python), "RECORD": str(tmp_path / "calls"), "SWEEP_PATCHES": "0", "MINUTES": "1",
           **environment}
    return subprocess.run(["bash", str(SCRIPT), str(corpus), str(tmp_path / "out")], env=env, capture_output=True,
                          text=True, timeout=60)


def calls(tmp_path) -> dict[str, str]:
    lines = (tmp_path / "calls").read_text().splitlines()
    return {line.split("--model ")[1].split()[0]: line for line in lines}


def test_ladder_widths_go_to_their_models_and_widen_the_warm_start(tmp_path) -> None:
    done = run_script(tmp_path, LADDER_WIDTHS="24 24 32")
    assert done.returncode == 0, done.stderr
    runs = calls(tmp_path)
    assert sorted(runs) == ["model_arunet", "model_runet", "model_unet"]
    for model, width in (("model_unet", 24), ("model_runet", 24), ("model_arunet", 32)):
        assert f"--init models/weights --width {width} " in runs[model]


def test_without_ladder_widths_the_registry_widths_are_kept(tmp_path) -> None:
    assert run_script(tmp_path).returncode == 0
    assert all("--width" not in line for line in calls(tmp_path).values())


def test_a_ladder_of_the_wrong_length_is_refused(tmp_path) -> None:
    done = run_script(tmp_path, LADDER_WIDTHS="24 32")
    assert done.returncode == 2 and "one width per model" in done.stderr
    assert not (tmp_path / "calls").exists()
