"""Load test: N concurrent clients POST a mix of photo sizes to the inference API.

Reports throughput, p50/p95/p99 latency, status counts and errors, and (given the
management URL) whether any worker process was restarted during the run::

    python -m scripts.loadtest --url http://127.0.0.1:8080 --management-url http://127.0.0.1:8081 \
        --model model_unet --clients 8 --requests 200 --min-mp 0.25 --max-mp 1.0

``--serve`` instead starts a TorchServe on loopback serving every archive of ``--model-store``
(as deployed: three workers sharing the machine) and also reports its start-up time.
"""
from __future__ import annotations

import argparse
import io
import json
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
                started = time.perf_counter()
                try:
                    response = session.post(
                        f"{url}/predictions/{model}", data=bodies[index % len(bodies)], timeout=timeout
                    )
                    status, detail = response.status_code, response.text[:200] if response.status_code != 200 else ""
                except requests.RequestException as exc:
                    status, detail = type(exc).__name__, str(exc)[:200]
                elapsed = time.perf_counter() - started
                with lock:
                    result.latencies.append(elapsed)
                    result.statuses[status] += 1
                    if detail:
                        result.errors.append(f"{model} #{index}: {status} {detail}")
                    bar.update(1)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    result.wall_s = time.perf_counter() - started
    bar.close()
    return result


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
            from scripts.server import running_server

            started = time.perf_counter()
            server = stack.enter_context(running_server(args.model_store))
            startup_s = round(time.perf_counter() - started, 1)
            url, management_url = server.inference_url, server.management_url
        before = {m: worker_pids(management_url, m) for m in models} if management_url else {}
        bookmark = server.log_sizes() if args.serve else {}
        result = run_load(url, models, bodies, args.requests, args.clients, args.timeout)
        after = {m: worker_pids(management_url, m) for m in models} if management_url else {}
        restart_lines = server.restarts_since(bookmark) if args.serve else []
    summary = result.summary()
    summary.update(clients=args.clients, models=models, min_mp=args.min_mp, max_mp=args.max_mp)
    if startup_s is not None:
        summary.update(startup_s=startup_s, restart_log_lines=len(restart_lines))
    if management_url:
        summary["worker_restarts"] = sum(len(before[m] - after[m]) for m in models)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return int(result.error_count > 0 or summary.get("worker_restarts", 0) > 0 or bool(restart_lines))


if __name__ == "__main__":
    raise SystemExit(main())
