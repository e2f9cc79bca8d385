"""Model-store builder: traced archives with the handler, its whole package and config; up-to-date skips."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from models import save_weights
from models.compiled import PROGRAM_FILES
from models.quantized import program_paths
from models.registry import graphs_id
from models.settings import BF16_TOLERANCE, ENSEMBLES, serving_config
from scripts.serving import archives
from scripts.serving.archives import TRACE_TOLERANCE, build_archive, checked_graphs, main, stamp_path
from tests.networks import random_network

TINY = {"width": 4, "depth": 2}
NAME = "model_runet"


@pytest.fixture()
def weights(tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    torch.manual_seed(0)
    save_weights(NAME, random_network(NAME, **TINY), {"config": TINY, "training": {"val_psnr": 1.0}}, folder)
    return folder


def test_archive_holds_model_handler_package_and_config(weights: Path, tmp_path: Path) -> None:
    archive = build_archive(NAME, tmp_path / "store", weights)
    assert archive.name == "R-UNET.mar"
    with zipfile.ZipFile(archive) as packed:
        names = set(packed.namelist())
        manifest = json.loads(packed.read("MAR-INF/MANIFEST.json"))
        config = yaml.safe_load(packed.read("model-config.yaml"))
    assert {"model.pt", "model-bf16.pt", "handler.py", "models/tiling.py", "models/pipeline.py", "models/settings.py"} <= names
    assert {PROGRAM_FILES["fp32"], PROGRAM_FILES["bf16"]} <= names and PROGRAM_FILES["int8"] not in names
    assert not any(name.endswith(".safetensors") for name in names)
    assert manifest["model"]["modelName"] == NAME
    assert config == serving_config(NAME) and config["handler"]["ensemble"] == ENSEMBLES[NAME]
    stamp = json.loads((tmp_path / "store" / "R-UNET.build.json").read_text())
    assert stamp["max_abs_diff"]["fp32_vs_eager"] < TRACE_TOLERANCE
    assert 0 < stamp["max_abs_diff"]["bf16_vs_fp32"] <= BF16_TOLERANCE
    assert stamp["max_abs_diff"]["program_fp32_vs_eager"] < TRACE_TOLERANCE
    assert stamp["training"] == {"val_psnr": 1.0}
    assert stamp["int8_program"].startswith("no int8 program")


def write_int8(weights: Path, made_from: str, candidate: bool = True) -> bytes:
    """A stand-in int8 program of ``NAME`` in ``weights`` with its record (``models.quantized``); the program's bytes."""
    program, record = program_paths(NAME, weights)
    program.write_bytes(b"an int8 program")
    record.write_text(json.dumps({"weights": made_from, "candidate": candidate, "max_loss_db": 0.01, "limit_db": 0.05}))
    return program.read_bytes()


def test_an_int8_program_kept_for_these_weights_is_packed_and_rebuilds_the_archive(weights: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    built = build_archive(NAME, store, weights).stat().st_mtime_ns
    program = write_int8(weights, graphs_id(NAME, weights))
    archive = build_archive(NAME, store, weights)
    assert archive.stat().st_mtime_ns != built
    with zipfile.ZipFile(archive) as packed:
        assert packed.read(PROGRAM_FILES["int8"]) == program
    assert json.loads(stamp_path(NAME, store).read_text())["int8_program"] == "int8 loses 0.01 dB on val (limit 0.05)"


@pytest.mark.parametrize("why", ["other weights", "not a candidate"])
def test_an_int8_program_of_other_weights_or_over_the_limit_is_left_out(weights: Path, tmp_path: Path, why: str) -> None:
    if why == "other weights":
        write_int8(weights, f"{NAME}:{'0' * 64}")
    else:
        write_int8(weights, graphs_id(NAME, weights), candidate=False)
    with zipfile.ZipFile(build_archive(NAME, tmp_path / "store", weights)) as packed:
        assert PROGRAM_FILES["int8"] not in packed.namelist()


def test_the_models_package_is_packed_whole_with_its_sub_packages(weights: Path, tmp_path: Path, monkeypatch) -> None:
    """Every .py under models/, a sub-package's included, goes into the archive; caches and weights do not."""
    package = tmp_path / "models"
    shutil.copytree(archives.MODELS_PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    (package / "extra" / "deeper").mkdir(parents=True)
    (package / "extra" / "__init__.py").write_text("")
    (package / "extra" / "deeper" / "__init__.py").write_text("")
    (package / "extra" / "deeper" / "kernel.py").write_text("VALUE = 1\n")
    (package / "extra" / "__pycache__").mkdir()
    (package / "extra" / "__pycache__" / "kernel.cpython-311.pyc").write_bytes(b"\0")
    (package / "extra" / "notes.safetensors").write_bytes(b"\0")
    monkeypatch.setattr(archives, "MODELS_PACKAGE", package)
    with zipfile.ZipFile(build_archive(NAME, tmp_path / "store", weights)) as packed:
        names = set(packed.namelist())
    sources = {f"models/{path.relative_to(package).as_posix()}" for path in package.rglob("*.py") if "__pycache__" not in path.parts}
    assert {"models/extra/deeper/kernel.py", "models/extra/__init__.py", "models/tiling.py"} <= sources
    assert sources <= names
    assert not any(name.endswith((".pyc", ".safetensors")) or "__pycache__" in name for name in names), sorted(names)


def test_up_to_date_archives_are_kept_and_new_weights_rebuild(weights: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    archive = build_archive(NAME, store, weights)
    built = archive.stat().st_mtime_ns
    assert build_archive(NAME, store, weights).stat().st_mtime_ns == built
    save_weights(NAME, random_network(NAME, **TINY), {"config": TINY}, weights)
    assert build_archive(NAME, store, weights).stat().st_mtime_ns != built


def test_both_graphs_match_eager_within_their_tolerances() -> None:
    graphs, diffs = checked_graphs(random_network("model_arunet", **TINY))
    assert diffs["fp32_vs_eager"] < TRACE_TOLERANCE and diffs["bf16_vs_fp32"] <= BF16_TOLERANCE
    x = torch.rand(2, 3, 48, 80)
    for graph in graphs.values():
        assert graph(x).shape == x.shape and graph(x).dtype == torch.float32
        assert not torch.allclose(graph(x), x)


def test_missing_weights_say_how_to_train(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["--store", str(tmp_path / "store"), "--weights-dir", str(tmp_path / "none"), "--models", NAME])
    assert code == 1
    assert f"python -m scripts.training.train --model {NAME}" in capsys.readouterr().err
