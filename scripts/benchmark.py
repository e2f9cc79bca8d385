"""CPU benchmarks of the three networks, TorchScript, the serving pipeline and the HTTP API.

    python -m scripts.benchmark                                   # every section
    python -m scripts.benchmark --section models torchscript      # some sections
    python -m scripts.benchmark --section http --url http://127.0.0.1:8080   # a running server
    python -m scripts.benchmark --quick                           # tiny inputs (tests)

Sections, all measured in one run on ``--threads`` intra-op threads (default 2, the Space's
vCPUs), repetitions interleaved so background load hits every contender alike, medians:

- models: parameters, GFLOPs per 128x128 tile (``FlopCounterMode``; one multiply-add = 2
  FLOPs) and tiles per second at batch 16;
- torchscript: eager versus the archive's traced network (``build_model_store.to_torchscript``)
  on the same batch; speed-up = eager time / TorchScript time - 1;
- serving: the handler's work per request (PNG decode, tiling, network, PNG encode, the same
  functions the handler calls) versus the bare network forward over the same tiles;
- http: megapixels per second through ``POST /predictions/<model>`` of a real TorchServe
  (started on loopback from freshly built archives unless ``--url`` is given).
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from models import MODELS, WEIGHTS_DIR, build_model, load_pretrained
from models.imaging import decode_image, encode_png
from models.registry import weight_paths
from models.tiling import Network, TileConfig, count_tiles, denoise_tiled

from .dataset import load_rgb
from .evaluate import degrade
from .paths import corpus_split, split_argument

BENCH_IMAGE = "mate-ladybird.png"  # of the corpus's val/, unless --image names another
SECTIONS = ("models", "torchscript", "serving", "http")


@dataclass(frozen=True)
class BenchConfig:
    """What the benchmark measures and how often."""

    threads: int = 2
    tile: int = TileConfig.tile
    batch: int = TileConfig.batch_size
    repeats: int = 7
    serving_megapixels: float = 1.0
    http_megapixels: tuple[float, ...] = (0.25, 1.0, 4.0)
    image: Path = field(default_factory=lambda: corpus_split("val") / BENCH_IMAGE)
    models: tuple[str, ...] = tuple(MODELS)
    weights_dir: Path = WEIGHTS_DIR


QUICK = {"tile": 64, "batch": 2, "repeats": 2, "serving_megapixels": 0.02, "http_megapixels": (0.01, 0.02)}


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls (after one warm-up call)."""
    call()
    return statistics.median(timed(call) for _ in range(repeats))


def timed(call: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def interleaved(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each call, timed in alternating rounds (one warm-up call each first)."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            times[key].append(timed(call))
    return {key: statistics.median(values) for key, values in times.items()}


def network(name: str, weights_dir: Path) -> torch.nn.Module:
    """The trained network when its weights exist, else a freshly initialised one (same cost)."""
    if weight_paths(name, weights_dir)[0].exists():
        return load_pretrained(name, weights_dir)
    return build_model(name).eval()


def photo_png(path: Path, megapixels: float, seed: int = 0) -> bytes:
    """A hybrid-noise degraded photograph resized to about ``megapixels``, as PNG bytes (what users send)."""
    clean = load_rgb(path)
    scale = (megapixels * 1e6 / (clean.shape[0] * clean.shape[1])) ** 0.5
    size = (max(round(clean.shape[1] * scale), 16), max(round(clean.shape[0] * scale), 16))
    resized = np.asarray(Image.fromarray(clean).resize(size, Image.Resampling.LANCZOS))
    buffer = io.BytesIO()
    Image.fromarray(degrade(resized, "hybrid", 0, seed)).save(buffer, format="PNG")
    return buffer.getvalue()


def tile_flops(net: torch.nn.Module, tile: int) -> float:
    """FLOPs of one forward pass on a single 3 x tile x tile input."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.rand(1, 3, tile, tile))
    return float(counter.get_total_flops())


def bench_models(cfg: BenchConfig) -> list[dict]:
    """Parameters, GFLOPs per tile and tiles per second of each network."""
    rows = []
    batch = torch.rand(cfg.batch, 3, cfg.tile, cfg.tile)
    for name in tqdm(cfg.models, desc="models", unit="model"):
        net = network(name, cfg.weights_dir)
        with torch.inference_mode():
            seconds = median_seconds(lambda: net(batch), cfg.repeats)
        rows.append({
            "model": name,
            "parameters": sum(p.numel() for p in net.parameters()),
            "gflops_per_tile": tile_flops(net, cfg.tile) / 1e9,
            "tiles_per_second": cfg.batch / seconds,
        })
    return rows


def bench_torchscript(cfg: BenchConfig) -> list[dict]:
    """Eager versus the archive's TorchScript network on the same batch, interleaved."""
    from .build_model_store import to_torchscript

    rows = []
    batch = torch.rand(cfg.batch, 3, cfg.tile, cfg.tile)
    for name in tqdm(cfg.models, desc="torchscript", unit="model"):
        eager = network(name, cfg.weights_dir)
        scripted, diff = to_torchscript(eager)
        with torch.inference_mode():
            medians = interleaved({"eager": lambda: eager(batch), "torchscript": lambda: scripted(batch)}, cfg.repeats)
        rows.append({
            "model": name,
            "eager_ms": medians["eager"] * 1e3,
            "torchscript_ms": medians["torchscript"] * 1e3,
            "speedup_percent": (medians["eager"] / medians["torchscript"] - 1) * 100,
            "max_abs_diff": diff,
        })
    return rows


class TimedNetwork:
    """Wraps a network and adds up the seconds spent inside its forward calls."""

    def __init__(self, net: Network) -> None:
        self.net = net
        self.seconds = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run the wrapped network, timing it."""
        start = time.perf_counter()
        out = self.net(x)
        self.seconds += time.perf_counter() - start
        return out


def handle_once(net: Network, body: bytes, tiles: TileConfig = TileConfig()) -> dict[str, float]:
    """Seconds of each step the handler performs for one request body."""
    start = time.perf_counter()
    decoded = decode_image(body)
    decoded_at = time.perf_counter()
    timed_net = TimedNetwork(net)
    output = denoise_tiled(timed_net, torch.from_numpy(decoded.pixels), tiles)
    denoised_at = time.perf_counter()
    encode_png(decoded, output.numpy())
    end = time.perf_counter()
    return {
        "decode": decoded_at - start,
        "tiling": denoised_at - decoded_at - timed_net.seconds,
        "network": timed_net.seconds,
        "encode": end - denoised_at,
        "total": end - start,
    }


def bare_forward(net: Network, tiles: int, config: TileConfig = TileConfig()) -> Callable[[], None]:
    """A call running ``net`` over ``tiles`` random tiles in the handler's batch sizes."""
    sizes = [min(config.batch_size, tiles - first) for first in range(0, tiles, config.batch_size)]
    batches = [torch.rand(size, 3, config.tile, config.tile) for size in sizes]

    def run() -> None:
        for batch in batches:
            net(batch)

    return run


def bench_serving(cfg: BenchConfig) -> list[dict]:
    """Handler end-to-end time versus the bare network over the same tiles, per model."""
    from .build_model_store import to_torchscript

    body = photo_png(cfg.image, cfg.serving_megapixels)
    decoded = decode_image(body)
    height, width = decoded.height, decoded.width
    tiles = count_tiles(height, width)
    rows = []
    for name in tqdm(cfg.models, desc="serving", unit="model"):
        scripted, _ = to_torchscript(network(name, cfg.weights_dir))
        bare = bare_forward(scripted, tiles)
        steps: list[dict[str, float]] = []
        bare_times: list[float] = []
        with torch.inference_mode():
            handle_once(scripted, body)
            bare()
            for _ in range(cfg.repeats):
                steps.append(handle_once(scripted, body))
                bare_times.append(timed(bare))
        step_medians = {key: statistics.median(s[key] for s in steps) for key in steps[0]}
        bare_median = statistics.median(bare_times)
        rows.append({
            "model": name, "megapixels": height * width / 1e6, "tiles": tiles,
            **{f"{key}_ms": value * 1e3 for key, value in step_medians.items()},
            "bare_network_ms": bare_median * 1e3,
            "overhead_ratio": step_medians["total"] / bare_median,
        })
    return rows


@contextmanager
def inference_url(cfg: BenchConfig, url: str | None) -> Iterator[str]:
    """``url`` when given, else a TorchServe on loopback serving freshly built archives."""
    if url:
        yield url.rstrip("/")
        return
    from .build_model_store import build_store
    from .server import running_server

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = Path(tmp)
        build_store(store, cfg.models, cfg.weights_dir, force=True)
        with running_server(store) as server:
            yield server.inference_url.rstrip("/")


def bench_http(cfg: BenchConfig, url: str | None = None) -> list[dict]:
    """Megapixels per second through the HTTP API at each size, per model (median latency)."""
    import requests

    bodies = {mp: photo_png(cfg.image, mp) for mp in cfg.http_megapixels}
    sizes = {mp: Image.open(io.BytesIO(body)).size for mp, body in bodies.items()}
    with inference_url(cfg, url) as base, requests.Session() as session:

        def post(name: str, body: bytes) -> None:
            response = session.post(f"{base}/predictions/{name}", data=body, timeout=600)
            response.raise_for_status()

        for name in cfg.models:
            post(name, bodies[min(bodies)])
        latencies: dict[tuple[str, float], list[float]] = {(n, mp): [] for n in cfg.models for mp in bodies}
        jobs = [(n, mp) for _ in range(cfg.repeats) for n in cfg.models for mp in bodies]
        for name, mp in tqdm(jobs, desc="http", unit="request"):
            latencies[(name, mp)].append(timed(lambda: post(name, bodies[mp])))
    rows = []
    for (name, mp), values in latencies.items():
        width, height = sizes[mp]
        seconds = statistics.median(values)
        rows.append({
            "model": name, "megapixels": width * height / 1e6, "size": f"{width}x{height}",
            "latency_s": seconds, "megapixels_per_second": width * height / 1e6 / seconds,
        })
    return rows


FORMATS = {
    "models": [("model", "{}"), ("parameters", "{:,}"), ("gflops_per_tile", "{:.2f}"), ("tiles_per_second", "{:.1f}")],
    "torchscript": [("model", "{}"), ("eager_ms", "{:.1f}"), ("torchscript_ms", "{:.1f}"),
                    ("speedup_percent", "{:+.1f}"), ("max_abs_diff", "{:.1e}")],
    "serving": [("model", "{}"), ("megapixels", "{:.2f}"), ("tiles", "{}"), ("decode_ms", "{:.1f}"),
                ("tiling_ms", "{:.1f}"), ("network_ms", "{:.1f}"), ("encode_ms", "{:.1f}"), ("total_ms", "{:.1f}"),
                ("bare_network_ms", "{:.1f}"), ("overhead_ratio", "{:.3f}")],
    "http": [("model", "{}"), ("size", "{}"), ("megapixels", "{:.2f}"), ("latency_s", "{:.2f}"),
             ("megapixels_per_second", "{:.3f}")],
}


def table(section: str, rows: list[dict]) -> str:
    """A section's rows as a Markdown table."""
    columns = FORMATS[section]
    lines = ["| " + " | ".join(key for key, _ in columns) + " |", "|---" + "|---:" * (len(columns) - 1) + "|"]
    lines += ["| " + " | ".join(fmt.format(row[key]) for key, fmt in columns) + " |" for row in rows]
    return "\n".join(lines)


def run(sections: list[str], cfg: BenchConfig, url: str | None = None) -> dict[str, list[dict]]:
    """Run the chosen sections in order; returns their rows."""
    torch.set_num_threads(cfg.threads)
    runners = {
        "models": bench_models, "torchscript": bench_torchscript, "serving": bench_serving,
        "http": lambda c: bench_http(c, url),
    }
    return {section: runners[section](cfg) for section in SECTIONS if section in sections}


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    """Parse the command line, run the sections, print their tables and optionally save JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--threads", type=int, default=BenchConfig.threads)
    parser.add_argument("--repeats", type=int, help=f"default {BenchConfig.repeats} ({QUICK['repeats']} with --quick)")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--image", type=Path,
                        help=f"photograph the inputs are made from (default: {BENCH_IMAGE} of the corpus's val/)")
    parser.add_argument("--url", help="inference API of a running TorchServe for the http section")
    parser.add_argument("--quick", action="store_true", help="tiny inputs and few repetitions")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    image = args.image or split_argument(parser, None, "val") / BENCH_IMAGE
    cfg = BenchConfig(
        threads=args.threads, image=image, models=tuple(args.models), weights_dir=args.weights_dir,
        **(QUICK if args.quick else {}),
    )
    if args.repeats:
        cfg = replace(cfg, repeats=args.repeats)
    results = run(args.section, cfg, args.url)
    print(f"torch {torch.__version__}, {cfg.threads} threads, tile {cfg.tile}, batch {cfg.batch}, "
          f"{cfg.repeats} interleaved repetitions (medians)\n")
    for section, rows in results.items():
        print(f"## {section}\n\n{table(section, rows)}\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": asdict(cfg), "results": results}, indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()
