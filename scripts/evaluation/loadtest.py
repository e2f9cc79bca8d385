"""Load test: N concurrent clients POST a mix of photo sizes to the inference API.

Reports throughput, p50/p95/p99 latency, status counts and errors, and (given the
management URL) whether any worker process was restarted during the run::

    python -m scripts.evaluation.loadtest --url http://127.0.0.1:8080 --management-url http://127.0.0.1:8081 \
        --model model_unet --clients 8 --requests 200 --min-mp 0.25 --max-mp 1.0

``--serve`` instead starts a TorchServe on loopback serving every archive of ``--model-store``
(as deployed: every endpoint with its pools, scripts/serving/front.py POOLS) and also reports its start-up
time.

``--mixed`` measures fairness instead (docs/fairness.md): on each ``--model``, ``--small-clients``
clients send ``--small-mp`` photos one after another, first on the idle server, then while one
client sends ``--large-requests`` photos of ``--large-mp`` and ``--medium-clients`` send
``--medium-mp`` photos. It reports p50/p95 per size class, the small class's loaded/idle p95
ratio (the acceptance asks at most 5), errors, worker restarts and (with ``--serve``) each
worker's peak memory::

    python -m scripts.evaluation.loadtest --serve --mixed --model model_unet --large-mp 40
"""
from __future__ import annotations

import argparse
import io
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from PIL import Image
from tqdm import tqdm

from scripts.paths import MODEL_STORE


@dataclass
class LoadResult:
    """Outcome of one load run: per-request latencies and statuses, and the wall time."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def requests(self) -> int:
        """Number of requests sent."""
        return sum(self.statuses.values())

    @property
    def error_count(self) -> int:
        """Requests that did not get a 200."""
        return self.requests - self.statuses.get(200, 0)

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0-100) in seconds over all requests."""
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    def summary(self) -> dict[str, object]:
        """The figures a report needs, JSON-serialisable."""
        return {
            "requests": self.requests,
            "errors": self.error_count,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0]))},
            "wall_s": round(self.wall_s, 2),
            "throughput_rps": round(self.requests / self.wall_s, 3) if self.wall_s else 0.0,
            "p50_s": round(self.percentile(50), 3),
            "p95_s": round(self.percentile(95), 3),
            "p99_s": round(self.percentile(99), 3),
            "first_errors": self.errors[:5],
        }


def synthetic_photo(megapixels: float, seed: int, quality: int = 90) -> bytes:
    """A JPEG of about ``megapixels`` (4:3) with smooth gradients plus sensor-like noise."""
    rng = np.random.default_rng(seed)
    width = max(16, int(round((megapixels * 1e6 * 4 / 3) ** 0.5)))
    height = max(16, int(round(megapixels * 1e6 / width)))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.28, 3)
    base = np.stack([128 + 100 * np.sin(xx / (40 + 30 * c) + yy / 70 + phase[c]) for c in range(3)], axis=-1)
    noisy = base + rng.normal(0, 20, base.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def make_bodies(count: int, min_mp: float, max_mp: float, seed: int = 0) -> list[bytes]:
    """``count`` synthetic photos with sizes spread evenly between ``min_mp`` and ``max_mp``."""
    sizes = np.linspace(min_mp, max_mp, count) if count > 1 else [min_mp]
    return [synthetic_photo(float(mp), seed + i) for i, mp in enumerate(sizes)]


def worker_pids(management_url: str, model: str) -> set[int]:
    """PIDs of the model's workers, as the management API describes them."""
    described = requests.get(f"{management_url}/models/{model}", timeout=30).json()
    return {int(w["pid"]) for entry in described for w in entry.get("workers", []) if w.get("pid")}


def timed_post(session: requests.Session, url: str, body: bytes, timeout: float, result: LoadResult,
               lock: threading.Lock, label: str) -> None:
    """POST ``body`` to ``url`` and record its latency, status and (unless 200) its error in ``result``."""
    started = time.perf_counter()
    try:
        response = session.post(url, data=body, timeout=timeout)
        status, detail = response.status_code, response.text[:200] if response.status_code != 200 else ""
    except requests.RequestException as exc:
        status, detail = type(exc).__name__, str(exc)[:200]
    with lock:
        result.latencies.append(time.perf_counter() - started)
        result.statuses[status] += 1
        if detail:
            result.errors.append(f"{label}: {status} {detail}")


def all_worker_pids(management_url: str) -> dict[str, set[int]]:
    """Every registered model's worker PIDs (hidden pools included), by model name."""
    listed = requests.get(f"{management_url}/models", params={"limit": 1000}, timeout=30).json()["models"]
    return {entry["modelName"]: worker_pids(management_url, entry["modelName"]) for entry in listed}


def run_load(
    url: str,
    models: Sequence[str],
    bodies: Sequence[bytes],
    total: int,
    clients: int,
    timeout: float = 600.0,
    progress: bool = True,
) -> LoadResult:
    """Send ``total`` requests from ``clients`` threads, cycling over ``bodies`` and ``models``."""
    result = LoadResult()
    lock = threading.Lock()
    counter = iter(range(total))
    bar = tqdm(total=total, desc="requests", unit="req", disable=not progress)

    def client() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                model = models[index % len(models)]
                timed_post(session, f"{url}/predictions/{model}", bodies[index % len(bodies)], timeout, result, lock,
                           label=f"{model} #{index}")
                bar.update(1)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    result.wall_s = time.perf_counter() - started
    bar.close()
    return result


@dataclass(frozen=True)
class SizeClass:
    """One size of the mixed load: its label, megapixels and how many clients send it."""

    label: str
    megapixels: float
    clients: int


def post_until(url: str, body: bytes, result: LoadResult, lock: threading.Lock, stop: threading.Event,
               count: int | None, timeout: float) -> None:
    """One client: POST ``body`` to ``url`` back to back, ``count`` times or until ``stop`` is set."""
    with requests.Session() as session:
        sent = 0
        while not stop.is_set() and (count is None or sent < count):
            timed_post(session, url, body, timeout, result, lock, label=url)
            sent += 1


def run_classes(url: str, models: Sequence[str], classes: Sequence[SizeClass], counts: dict[str, int | None],
                until: str | None, timeout: float, lead_s: float = 0.0) -> dict[str, LoadResult]:
    """Run every class's clients on every model at once; each sends ``counts[label]`` requests, or
    (None) keeps sending until the clients of class ``until`` are done. Classes other than
    ``until`` start ``lead_s`` seconds later, so the ``until`` class is already being served."""
    results = {size.label: LoadResult() for size in classes}
    bodies = {size.label: synthetic_photo(size.megapixels, seed=int(size.megapixels * 100)) for size in classes}
    lock, stop = threading.Lock(), threading.Event()
    started = time.perf_counter()
    with ThreadPoolExecutor(sum(size.clients for size in classes) * len(models)) as pool:
        leading = [pool.submit(post_until, f"{url}/predictions/{model}", bodies[size.label], results[size.label], lock,
                               stop, counts[size.label], timeout)
                   for size in classes if size.label == until for model in models for _ in range(size.clients)]
        time.sleep(lead_s if leading else 0.0)
        others = [pool.submit(post_until, f"{url}/predictions/{model}", bodies[size.label], results[size.label], lock,
                              stop, counts[size.label], timeout)
                  for size in classes if size.label != until for model in models for _ in range(size.clients)]
        for future in leading:
            future.result()
        if leading:
            stop.set()
        for future in others:
            future.result()
    for result in results.values():
        result.wall_s = time.perf_counter() - started
    return results


def run_mixed(url: str, models: Sequence[str], small: SizeClass, medium: SizeClass, large: SizeClass,
              idle_requests: int, large_requests: int, timeout: float = 1800.0, lead_s: float = 2.0) -> dict[str, object]:
    """The fairness measurement: the small class alone, then all three classes at once (module docstring)."""
    idle = run_classes(url, models, [small], {small.label: idle_requests}, None, timeout)[small.label]
    loaded = run_classes(url, models, [small, medium, large], {small.label: None, medium.label: None,
                                                                large.label: large_requests}, large.label, timeout, lead_s)
    report: dict[str, object] = {"idle": {small.label: class_summary(idle)},
                                 "loaded": {label: class_summary(result) for label, result in loaded.items()}}
    report["small_p95_ratio"] = round(loaded[small.label].percentile(95) / idle.percentile(95), 2)
    report["errors"] = idle.error_count + sum(result.error_count for result in loaded.values())
    return report


def class_summary(result: LoadResult) -> dict[str, object]:
    """The figures of one size class: requests, errors, p50, p95."""
    return {"requests": result.requests, "errors": result.error_count, "p50_s": round(result.percentile(50), 3),
            "p95_s": round(result.percentile(95), 3), "first_errors": result.errors[:3]}


def peak_rss_mib(pids: Sequence[int]) -> dict[str, float]:
    """Each process's peak resident memory (VmHWM) in MiB, by pid."""
    peaks = {}
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[str(pid)] = round(int(line.split()[1]) / 1024, 1)
    return peaks


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="inference API base URL")
    parser.add_argument("--management-url", default=None, help="management API base URL (restart check)")
    parser.add_argument("--model", action="append", help="model name(s) to hit, cycled (default model_unet)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--min-mp", type=float, default=0.25)
    parser.add_argument("--max-mp", type=float, default=1.0)
    parser.add_argument("--distinct-images", type=int, default=8, help="how many different photos to cycle")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-request timeout (s)")
    parser.add_argument("--serve", action="store_true", help="start a loopback TorchServe (all archives) for the run")
    parser.add_argument("--model-store", type=Path, default=MODEL_STORE)
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    mixed = parser.add_argument_group("mixed sizes (--mixed)")
    mixed.add_argument("--mixed", action="store_true", help="measure small-request latency while large ones run")
    mixed.add_argument("--small-mp", type=float, default=0.1)
    mixed.add_argument("--medium-mp", type=float, default=1.0)
    mixed.add_argument("--large-mp", type=float, default=40.0)
    mixed.add_argument("--small-clients", type=int, default=2, help="per model")
    mixed.add_argument("--medium-clients", type=int, default=1, help="per model")
    mixed.add_argument("--idle-requests", type=int, default=10, help="per small client, on the idle server")
    mixed.add_argument("--direct", action="store_true",
                       help="with --serve: post straight to each public model's TorchServe worker, past the front's pools")
    mixed.add_argument("--large-requests", type=int, default=1, help="sent one after another by one client per model")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load test; exit status 1 if any request failed or a worker restarted."""
    args = parse_args(argv)
    models = args.model or ["model_unet"]
    bodies = make_bodies(args.distinct_images, args.min_mp, args.max_mp)
    with ExitStack() as stack:
        url, management_url = args.url, args.management_url
        startup_s = None
        if args.serve:
            from scripts.serving.harness import running_server

            started = time.perf_counter()
            server = stack.enter_context(running_server(args.model_store))
            startup_s = round(time.perf_counter() - started, 1)
            url, management_url = server.torchserve_url if args.direct else server.inference_url, server.management_url
        before = all_worker_pids(management_url) if management_url else {}
        bookmark = server.log_sizes() if args.serve else {}
        if args.mixed:
            summary = mixed_summary(args, url, models)
            failed = summary["errors"] > 0
        else:
            result = run_load(url, models, bodies, args.requests, args.clients, args.timeout)
            summary = result.summary()
            summary.update(clients=args.clients, models=models, min_mp=args.min_mp, max_mp=args.max_mp)
            failed = result.error_count > 0
        after = all_worker_pids(management_url) if management_url else {}
        restart_lines = server.restarts_since(bookmark) if args.serve else []
        if args.serve:
            summary["worker_peak_rss_mib"] = {name: peak_rss_mib(sorted(pids)) for name, pids in after.items()}
    if startup_s is not None:
        summary.update(startup_s=startup_s, restart_log_lines=len(restart_lines))
    if management_url:
        summary["worker_restarts"] = sum(len(pids - after.get(name, set())) for name, pids in before.items())
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return int(failed or summary.get("worker_restarts", 0) > 0 or bool(restart_lines))


def mixed_summary(args: argparse.Namespace, url: str, models: Sequence[str]) -> dict[str, object]:
    """``run_mixed`` with the command line's sizes, and the machine it ran on."""
    small = SizeClass(f"{args.small_mp:g} MP", args.small_mp, args.small_clients)
    medium = SizeClass(f"{args.medium_mp:g} MP", args.medium_mp, args.medium_clients)
    large = SizeClass(f"{args.large_mp:g} MP", args.large_mp, 1)
    summary = run_mixed(url, models, small, medium, large, args.idle_requests, args.large_requests, args.timeout)
    summary.update(models=list(models), cpu=cpu_name(), cores=os.cpu_count(), torch=torch_version(),
                   date=time.strftime("%Y-%m-%d"))
    return summary


def cpu_name() -> str:
    """The CPU's model name as ``lscpu`` gives it (from /proc/cpuinfo)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def torch_version() -> str:
    """The installed torch's version, without importing it."""
    from importlib.metadata import version

    return version("torch")


if __name__ == "__main__":
    raise SystemExit(main())
