"""Build the TorchServe archives (``model_store/*.mar``) from the trained weights.

For each model: snapshot its weights (training may be rewriting them), rebuild the network,
trace it to TorchScript on a 1x3x128x128 example, check the traced network against eager
PyTorch, then pack it with ``torch-model-archiver`` together with ``handler.py``, the
``models`` package (as ``models/``, so ``import models.tiling`` works inside the worker) and
a generated ``model-config.yaml``. A ``<ARCHIVE>.build.json`` stamp beside each archive
records a fingerprint of everything that went in, so an up-to-date archive is not rebuilt.

    python -m scripts.build_model_store [--force] [--models model_unet ...] [--compare]
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
import time
from pathlib import Path
from typing import Callable, Iterable

import torch
import yaml
from tqdm import tqdm

from models.imaging import MAX_PIXELS
from models.registry import MODELS, WEIGHTS_DIR, load_pretrained, weight_paths
from models.tiling import TileConfig

from .paths import MODEL_STORE, REPO

HANDLER = REPO / "handler.py"
MODELS_PACKAGE = REPO / "models"
EXAMPLE_SHAPE = (1, 3, 128, 128)
CHECK_SHAPES = (EXAMPLE_SHAPE, (TileConfig.batch_size, 3, 128, 128))
TRACE_TOLERANCE = 1e-5
ARCHIVE_VERSION = "1.0"

# The archive's model-config.yaml: TorchServe's per-model settings plus the handler's own.
# One worker per model and one request per batch: three models share 2 vCPUs, a batch of
# differently sized photographs cannot be stacked anyway, and the handler already batches
# the tiles of one image. responseTimeout covers the largest accepted image (max_pixels)
# on the slowest network; past it TorchServe would kill the worker.
SERVING_CONFIG: dict = {
    "minWorkers": 1,
    "maxWorkers": 1,
    "batchSize": 1,
    "maxBatchDelay": 0,
    "responseTimeout": 600,
    "startupTimeout": 180,
    "handler": {
        "threads": 2,
        "tile": TileConfig.tile,
        "overlap": TileConfig.overlap,
        "tile_batch": TileConfig.batch_size,
        "max_pixels": MAX_PIXELS,
    },
}

Variant = Callable[[torch.jit.ScriptModule], torch.jit.ScriptModule]
VARIANTS: dict[str, Variant] = {
    "traced": lambda traced: traced,
    "frozen": torch.jit.freeze,
    "optimized": torch.jit.optimize_for_inference,
}
# Chosen with --compare (figures in the README, "Models"): freezing gained 1-2 % over the
# traced network, within the noise, and optimize_for_inference slowed model_arunet down.
VARIANT = "traced"


def archive_path(name: str, store: Path) -> Path:
    """Where the archive of model ``name`` is written."""
    return store / f"{MODELS[name].archive}.mar"


def stamp_path(name: str, store: Path) -> Path:
    """The build record kept beside the archive of model ``name``."""
    return store / f"{MODELS[name].archive}.build.json"


def model_config_yaml() -> str:
    """The text of the ``model-config.yaml`` packed into every archive."""
    return yaml.safe_dump(SERVING_CONFIG, sort_keys=False)


def package_sources() -> list[Path]:
    """The ``models`` package's Python files (no weights, no caches), sorted."""
    return sorted(MODELS_PACKAGE.glob("*.py"))


def snapshot_weights(name: str, weights_dir: Path, dest: Path) -> Path:
    """Copy a model's weight files into ``dest`` so they cannot change mid-build; returns ``dest``."""
    for path in weight_paths(name, weights_dir):
        if not path.exists():
            raise FileNotFoundError(
                f"no trained weights for {name}: {path} is missing; train them with "
                f"'python -m scripts.train --model {name}' (they go to {WEIGHTS_DIR})"
            )
        shutil.copy2(path, dest / path.name)
    return dest


def fingerprint(name: str, weights_dir: Path) -> str:
    """SHA-256 of everything an archive is built from: weights, handler, models/*.py, config, tools."""
    digest = hashlib.sha256()
    inputs = [*weight_paths(name, weights_dir), HANDLER, *package_sources(), Path(__file__)]
    for path in inputs:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(model_config_yaml().encode())
    digest.update(f"{name} {VARIANT} torch {torch.__version__}".encode())
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


def to_torchscript(model: torch.nn.Module, variant: str = VARIANT) -> tuple[torch.jit.ScriptModule, float]:
    """Trace ``model`` on the example input, apply ``variant`` and check it against eager.

    Returns the TorchScript module and the largest difference from eager over ``CHECK_SHAPES``;
    raises ``RuntimeError`` when that exceeds ``TRACE_TOLERANCE``.
    """
    model = model.eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.rand(EXAMPLE_SHAPE), check_trace=False)
    scripted = VARIANTS[variant](traced.eval())
    diff = max(max_abs_diff(model, scripted, shape) for shape in CHECK_SHAPES)
    if diff >= TRACE_TOLERANCE:
        raise RuntimeError(f"{variant} TorchScript differs from eager by {diff:.3g} (limit {TRACE_TOLERANCE})")
    return scripted, diff


def stage_files(work: Path, scripted: torch.jit.ScriptModule) -> tuple[Path, Path, Path]:
    """Write model.pt, model-config.yaml and an ``extra/models/`` copy of the package into ``work``."""
    model_file = work / "model.pt"
    scripted.save(str(model_file))
    config_file = work / "model-config.yaml"
    config_file.write_text(model_config_yaml())
    package = work / "extra" / "models"
    package.mkdir(parents=True)
    for source in package_sources():
        shutil.copy2(source, package / source.name)
    return model_file, config_file, package.parent


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
        scripted, diff = to_torchscript(load_pretrained(name, weights))
        model_file, config_file, extra = stage_files(work, scripted)
        export = work / "export"
        export.mkdir()
        run_archiver(name, model_file, config_file, extra, export, work)
        _, info_path = weight_paths(name, weights)
        record = {
            "fingerprint": digest,
            "model": name,
            "variant": VARIANT,
            "max_abs_diff_vs_eager": diff,
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
    return [build_archive(name, store, weights_dir, force) for name in tqdm(list(names), desc="archives", unit="model")]


def time_call(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Seconds one call of ``net`` on ``x`` takes."""
    start = time.perf_counter()
    net(x)
    return time.perf_counter() - start


def compare_variants(name: str, weights_dir: Path, rounds: int = 7) -> dict[str, dict[str, float]]:
    """Median time of each TorchScript variant relative to eager on one batch of tiles, and its error.

    Variants are timed in interleaved rounds so that background load hits all of them alike.
    """
    model = load_pretrained(name, weights_dir)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.rand(EXAMPLE_SHAPE), check_trace=False).eval()
    nets = {"eager": model, **{variant: make(traced) for variant, make in VARIANTS.items()}}
    x = torch.rand(CHECK_SHAPES[-1])
    times: dict[str, list[float]] = {key: [] for key in nets}
    with torch.inference_mode():
        for net in nets.values():
            net(x)
        for _ in range(rounds):
            for key, net in nets.items():
                times[key].append(time_call(net, x))
    medians = {key: sorted(values)[len(values) // 2] for key, values in times.items()}
    return {
        key: {"time_vs_eager": medians[key] / medians["eager"], "max_abs_diff": max_abs_diff(model, net, x.shape)}
        for key, net in nets.items()
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: build the model store, or with --compare time the TorchScript variants."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=MODEL_STORE, help="output folder")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--force", action="store_true", help="rebuild even up-to-date archives")
    parser.add_argument("--compare", action="store_true", help="time traced/frozen/optimized against eager")
    parser.add_argument("--threads", type=int, default=SERVING_CONFIG["handler"]["threads"], help="for --compare")
    args = parser.parse_args(argv)
    try:
        if args.compare:
            torch.set_num_threads(args.threads)
            for name in args.models:
                for key, row in compare_variants(name, args.weights_dir).items():
                    print(f"{name:14s} {key:10s} time/eager {row['time_vs_eager']:.3f}  max|diff| {row['max_abs_diff']:.2e}")
            return 0
        for path in build_store(args.store, args.models, args.weights_dir, args.force):
            print(path)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
