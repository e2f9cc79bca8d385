"""Peak resident memory of a TorchServe worker while it denoises 1, 4, 16 and 40 megapixel photos.

The worker's peak RSS (``VmHWM`` in ``/proc/PID/status``) is reset before each request by
writing ``5`` to ``/proc/PID/clear_refs``, so each figure is that request's own peak. Requests go
to TorchServe directly, past the front, which would send larger sizes to the endpoint's other pools::

    python -m scripts.evaluation.memory_report --model-store model_store --model model_unet --sizes 1 4 16 39.6

Linux only, and the caller must own the worker process (it does when it started the server).
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from scripts.evaluation.loadtest import synthetic_photo
from scripts.paths import MODEL_STORE

MIB = 1024 * 1024
WARM_UP_MP = 0.2


@dataclass(frozen=True)
class MemorySample:
    """One request's size, status, latency and the worker's peak and baseline RSS (MiB)."""

    megapixels: float
    request_bytes: int
    status: int
    seconds: float
    baseline_mib: float
    peak_mib: float


def status_field(pid: int, name: str) -> int:
    """A ``kB`` field of ``/proc/PID/status`` (e.g. VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(f"{name} not in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> None:
    """Reset the process's peak RSS (VmHWM) to its current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def measure_request(url: str, body: bytes, pid: int, megapixels: float, timeout: float = 1800.0) -> MemorySample:
    """POST ``body`` to ``url`` and return the worker's peak RSS during that request."""
    reset_peak_rss(pid)
    baseline = status_field(pid, "VmRSS")
    started = time.perf_counter()
    response = requests.post(url, data=body, timeout=timeout)
    seconds = time.perf_counter() - started
    return MemorySample(
        megapixels=megapixels,
        request_bytes=len(body),
        status=response.status_code,
        seconds=round(seconds, 2),
        baseline_mib=round(baseline / MIB, 1),
        peak_mib=round(status_field(pid, "VmHWM") / MIB, 1),
    )


def measure_sizes(inference_url: str, model: str, pid: int, sizes: Sequence[float]) -> list[MemorySample]:
    """Peak worker RSS for one synthetic photo of each size (megapixels), smallest first.

    A 0.2 MP warm-up request first runs a full tile batch, so one-time allocations (TorchScript's
    profiling runs, thread pools) are not charged to the first measured size.
    """
    url = f"{inference_url}/predictions/{model}"
    requests.post(url, data=synthetic_photo(WARM_UP_MP, seed=1), timeout=600).raise_for_status()
    return [measure_request(url, synthetic_photo(mp, seed=int(mp * 10)), pid, mp) for mp in sorted(sizes)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-store", type=Path, default=MODEL_STORE)
    parser.add_argument("--model", default="model_unet")
    parser.add_argument("--sizes", type=float, nargs="+", default=[1.0, 4.0, 16.0, 39.6], help="megapixels")
    parser.add_argument("--json", type=Path, default=None, help="also write the samples here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start a loopback TorchServe with one model, measure each size, print a JSON table."""
    from scripts.serving.harness import running_server
    from scripts.serving.processes import models_value

    args = parse_args(argv)
    with running_server(args.model_store, models=models_value([args.model])) as server:
        (pid,) = server.worker_pids(args.model)
        samples = measure_sizes(server.torchserve_url, args.model, pid, args.sizes)
    table = [asdict(sample) for sample in samples]
    print(json.dumps(table, indent=2))
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")
    return int(any(sample.status != 200 for sample in samples))


if __name__ == "__main__":
    raise SystemExit(main())
