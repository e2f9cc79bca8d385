"""Build the TorchServe archives (``model_store/*.mar``) from the trained weights.

For each model: snapshot its weights (training may be rewriting them), rebuild the network,
trace its fp32 and bf16 graphs (``models.graphs``: channels-last, frozen), check the fp32 graph
against eager PyTorch and the bf16 graph against the fp32 one, export both precisions' programs
for a full tile batch (``models.compiled``; the fp32 one checked against eager), add the int8
program where ``scripts.training.quantize`` kept one for these weights (``models.quantized``), then pack them
all with ``torch-model-archiver`` together with ``handler.py``, the ``models`` package whole (as
``models/``, every ``.py`` of it, sub-packages included, so ``import models.tiling`` works inside
the worker) and ``model-config.yaml`` (``models.settings.serving_config``). A
``<ARCHIVE>.build.json`` stamp beside each archive records a fingerprint of everything that went
in, so an up-to-date archive is not rebuilt.

    python -m scripts.serving.archives [--force] [--models model_unet ...]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
import yaml

from models.compiled import PROGRAM_FILES, save_programs
from models.graphs import EXAMPLE_SHAPE, GRAPH_FILES, trace_graphs, write_identity
from models.precision import INT8
from models.quantized import kept_program, program_paths
from models.registry import MODELS, WEIGHTS_DIR, graphs_id, load_pretrained, weight_paths
from models.settings import BF16_TOLERANCE, HandlerSettings, serving_config
from scripts.paths import MODEL_STORE, REPO, print_paths

HANDLER = REPO / "handler.py"
MODELS_PACKAGE = REPO / "models"
# One served tile and one full tile batch.
CHECK_SHAPES = (EXAMPLE_SHAPE, (HandlerSettings.tile_batch, *EXAMPLE_SHAPE[1:]))
TRACE_TOLERANCE = 1e-5
ARCHIVE_VERSION = "1.0"


def archive_path(name: str, store: Path) -> Path:
    """Where the archive of model ``name`` is written."""
    return store / f"{MODELS[name].archive}.mar"


def stamp_path(name: str, store: Path) -> Path:
    """The build record kept beside the archive of model ``name``."""
    return store / f"{MODELS[name].archive}.build.json"


def model_config_yaml(name: str) -> str:
    """The text of the ``model-config.yaml`` packed into the archive of model ``name``."""
    return yaml.safe_dump(serving_config(name), sort_keys=False)


def package_sources() -> list[Path]:
    """Every Python file of the ``models`` package, sub-packages included (no weights, no caches), sorted."""
    return sorted(path for path in MODELS_PACKAGE.rglob("*.py") if "__pycache__" not in path.relative_to(MODELS_PACKAGE).parts)


def int8_files(name: str, weights_dir: Path) -> list[Path]:
    """The model's int8 program and its record in ``weights_dir`` (``models.quantized.program_paths``), those that exist."""
    return [path for path in program_paths(name, weights_dir) if path.exists()]


def snapshot_weights(name: str, weights_dir: Path, dest: Path) -> Path:
    """Copy a model's weight files (and its int8 program, if any) into ``dest`` so they cannot change mid-build; returns ``dest``."""
    for path in weight_paths(name, weights_dir):
        if not path.exists():
            raise FileNotFoundError(
                f"no trained weights for {name}: {path} is missing; train them with "
                f"'python -m scripts.training.train --model {name}' (they go to {WEIGHTS_DIR})"
            )
    for path in (*weight_paths(name, weights_dir), *int8_files(name, weights_dir)):
        shutil.copy2(path, dest / path.name)
    return dest


def fingerprint(name: str, weights_dir: Path) -> str:
    """SHA-256 of everything an archive is built from: weights, handler, the models package, config, tools."""
    digest = hashlib.sha256()
    inputs = [(path.name, path) for path in (*weight_paths(name, weights_dir), *int8_files(name, weights_dir),
                                             HANDLER, Path(__file__))]
    inputs += [(path.relative_to(MODELS_PACKAGE).as_posix(), path) for path in package_sources()]
    for label, path in inputs:
        digest.update(label.encode())
        digest.update(path.read_bytes())
    digest.update(model_config_yaml(name).encode())
    digest.update(f"{name} torch {torch.__version__}".encode())
    return digest.hexdigest()


def is_up_to_date(name: str, store: Path, digest: str) -> bool:
    """Whether the archive exists and was built from exactly these inputs."""
    stamp = stamp_path(name, store)
    if not archive_path(name, store).exists() or not stamp.exists():
        return False
    return json.loads(stamp.read_text()).get("fingerprint") == digest


def max_abs_diff(a: torch.nn.Module, b: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """Largest absolute difference between two networks' outputs on a fixed random input."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return float((a(x) - b(x)).abs().max())


def max_abs_diff_from(reference: torch.nn.Module, net: torch.nn.Module) -> float:
    """Largest absolute difference of ``net`` from ``reference`` over ``CHECK_SHAPES``."""
    return max(max_abs_diff(reference, net, shape) for shape in CHECK_SHAPES)


def checked_graphs(model: torch.nn.Module) -> tuple[dict[str, torch.jit.ScriptModule], dict[str, float]]:
    """Both served graphs of ``model`` and their checked differences (fp32 vs eager, bf16 vs fp32).

    Raises ``RuntimeError`` when the fp32 graph is off by ``TRACE_TOLERANCE`` or more, or the bf16
    graph by more than the handler's ``BF16_TOLERANCE``.
    """
    model = model.eval()
    graphs = trace_graphs(model)
    diffs = {"fp32_vs_eager": max_abs_diff_from(model, graphs["fp32"]),
             "bf16_vs_fp32": max_abs_diff_from(graphs["fp32"], graphs["bf16"])}
    if diffs["fp32_vs_eager"] >= TRACE_TOLERANCE:
        raise RuntimeError(f"the fp32 graph differs from eager by {diffs['fp32_vs_eager']:.3g} (limit {TRACE_TOLERANCE})")
    if diffs["bf16_vs_fp32"] > BF16_TOLERANCE:
        raise RuntimeError(f"the bf16 graph differs from fp32 by {diffs['bf16_vs_fp32']:.3g} (limit {BF16_TOLERANCE})")
    return graphs, diffs


def checked_programs(model: torch.nn.Module, folder: Path, int8: Path | None) -> float:
    """Export ``model``'s float programs into ``folder`` (``models.compiled``), copy the ``int8`` one there when given;
    the fp32 program's difference from eager.

    Raises ``RuntimeError`` when it is ``TRACE_TOLERANCE`` or more.
    """
    paths = save_programs(model, folder, CHECK_SHAPES[1])
    if int8 is not None:
        shutil.copy2(int8, Path(folder) / PROGRAM_FILES[INT8])
    diff = max_abs_diff(model.eval(), torch.export.load(str(paths["fp32"])).module(), CHECK_SHAPES[1])
    if diff >= TRACE_TOLERANCE:
        raise RuntimeError(f"the exported fp32 program differs from eager by {diff:.3g} (limit {TRACE_TOLERANCE})")
    return diff


def stage_files(name: str, work: Path, graphs: dict[str, torch.jit.ScriptModule], identity: str) -> tuple[Path, Path, Path]:
    """Write model ``name``'s graphs, model-config.yaml and an ``extra/`` folder (bf16 graph, ``models/`` package, the
    graphs' ``identity``) into ``work``."""
    extra = work / "extra"
    package = extra / "models"
    package.mkdir(parents=True)
    for source in package_sources():
        target = package / source.relative_to(MODELS_PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    model_file = work / GRAPH_FILES["fp32"]
    graphs["fp32"].save(str(model_file))
    graphs["bf16"].save(str(extra / GRAPH_FILES["bf16"]))
    write_identity(extra, identity)
    config_file = work / "model-config.yaml"
    config_file.write_text(model_config_yaml(name))
    return model_file, config_file, extra


def run_archiver(name: str, model_file: Path, config_file: Path, extra: Path, export: Path, work: Path) -> None:
    """Pack one archive with torch-model-archiver, in a private temp dir (it stages files there)."""
    command = [
        sys.executable, "-m", "model_archiver.model_packaging",
        "--model-name", name,
        "--version", ARCHIVE_VERSION,
        "--serialized-file", str(model_file),
        "--handler", str(HANDLER),
        "--extra-files", str(extra),
        "--config-file", str(config_file),
        "--export-path", str(export),
        "--force",
    ]
    env = {**os.environ, "TMPDIR": str(work)}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"torch-model-archiver failed for {name}:\n{result.stdout}{result.stderr}")


def build_archive(name: str, store: Path, weights_dir: Path, force: bool = False) -> Path:
    """Build (or keep, when up to date) the archive of model ``name``; returns its path."""
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"build-{name}-") as tmp:
        work = Path(tmp)
        weights = snapshot_weights(name, weights_dir, work)
        digest = fingerprint(name, weights)
        target = archive_path(name, store)
        if not force and is_up_to_date(name, store, digest):
            return target
        model = load_pretrained(name, weights)
        graphs, diffs = checked_graphs(model)
        identity = graphs_id(name, weights)
        model_file, config_file, extra = stage_files(name, work, graphs, identity)
        int8, int8_why = kept_program(name, weights, identity)
        diffs["program_fp32_vs_eager"] = checked_programs(model, extra, int8)
        export = work / "export"
        export.mkdir()
        run_archiver(name, model_file, config_file, extra, export, work)
        _, info_path = weight_paths(name, weights)
        record = {
            "fingerprint": digest,
            "model": name,
            "max_abs_diff": diffs,
            "int8_program": int8_why,
            "training": json.loads(info_path.read_text()).get("training", {}),
        }
        os.replace(export / f"{name}.mar", target)
    stamp_path(name, store).write_text(json.dumps(record, indent=2) + "\n")
    return target


def build_store(
    store: Path = MODEL_STORE,
    names: Iterable[str] = MODELS,
    weights_dir: Path = WEIGHTS_DIR,
    force: bool = False,
) -> list[Path]:
    """Build every named model's archive into ``store`` (skipping up-to-date ones); returns their paths."""
    return [build_archive(name, store, weights_dir, force) for name in names]


def main(argv: list[str] | None = None) -> int:
    """Command line: build the model store."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=MODEL_STORE, help="output folder")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--force", action="store_true", help="rebuild even up-to-date archives")
    args = parser.parse_args(argv)
    return print_paths(lambda: build_store(args.store, args.models, args.weights_dir, args.force))


if __name__ == "__main__":
    sys.exit(main())
