"""The test harness: the service on free loopback ports, for the tests, the benchmark, the load test
and the memory report.

``running_server`` runs ``torchserve --foreground`` with the project's ``config.properties`` on
free 127.0.0.1 ports (overridden through ``TS_*`` environment variables, which the config allows
with ``enable_envvars_config``), logs and temp files in a private folder, registers every model
once per worker pool (``scripts.serving.processes.registrations``), waits until every
registration has a READY worker, then starts nginx (``scripts/serving/front.py``) on another free
loopback port, and stops both process groups when done. Clients use ``Server.inference_url``, the
front; ``Server.torchserve_url`` is TorchServe itself. The production entry point is
``scripts.serving.supervisor``.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.paths import CONFIG
from scripts.serving.front import front_settings
from scripts.serving.processes import (
    get,
    registrations,
    start_front,
    start_torchserve,
    stop,
    wait_until_ready,
    wait_until_serving,
    worker_log_tail,
)

# What TorchServe (frontend and worker) logs when a worker dies and is started again.
RESTART_MARKERS = ("Backend worker process died", "Worker disconnected", "Retry worker", "Auto recovery")


def get_json(url: str, timeout: float) -> Any:
    """GET ``url`` and parse its JSON body; raises OSError unless it answers 200."""
    status, body = get(url, timeout)
    if status != 200:
        raise OSError(f"{url} answered {status}: {body[:200]!r}")
    return json.loads(body)


@dataclass
class Server:
    """A running service: the front's URL (what clients use), TorchServe's URLs, logs and processes."""

    inference_url: str
    torchserve_url: str
    management_url: str
    metrics_url: str
    log_dir: Path
    process: subprocess.Popen
    front: subprocess.Popen | None = None

    def worker_pids(self, model: str) -> list[int]:
        """Process ids of the model's workers, from the management API."""
        described = get_json(f"{self.management_url}/models/{model}", timeout=10)
        return [worker["pid"] for entry in described for worker in entry.get("workers", [])]

    def worker_log_tail(self, chars: int = 6000) -> str:
        """The end of the workers' log (model_log.log), where handler tracebacks land."""
        return worker_log_tail(self.log_dir, chars)

    def log_text(self) -> str:
        """Everything TorchServe and its workers logged so far (all log files, concatenated)."""
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log")))

    def log_sizes(self) -> dict[str, int]:
        """The current size in bytes of each log file, a bookmark for ``restarts_since``."""
        return {path.name: path.stat().st_size for path in self.log_dir.glob("*.log")}

    def restarts_since(self, sizes: dict[str, int]) -> list[str]:
        """Log lines about dying or restarted workers written after the ``log_sizes`` bookmark."""
        lines = []
        for path in sorted(self.log_dir.glob("*.log")):
            with open(path, "rb") as log:
                log.seek(sizes.get(path.name, 0))
                new = log.read().decode(errors="replace")
            lines += [line for line in new.splitlines() if any(marker in line for marker in RESTART_MARKERS)]
        return lines


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(
    model_store: Path,
    models: str = "all",
    config: Path = CONFIG,
    env: dict | None = None,
    startup_timeout: float = 300,
) -> Iterator[Server]:
    """Run TorchServe over ``model_store`` and the nginx front before it, on free loopback ports, until the block ends.

    ``models`` is TorchServe's ``--models`` value ("all", or "name=ARCHIVE.mar ..."); ``env``
    adds environment variables (``TS_*`` overrides of ``config``, ``DENOISER_THREADS``...), which
    the front follows too (CORS origin, body limit). Logs, metrics, worker sockets, the pid
    files, nginx's configuration and unpacked archives go to a private temp dir, so several
    servers can run side by side.
    """
    model_store = Path(model_store).resolve()
    config = Path(config).resolve()
    served = registrations(model_store, models)
    with tempfile.TemporaryDirectory(prefix="torchserve-") as tmp:
        work = Path(tmp)
        log_dir = work / "logs"
        log_dir.mkdir()
        ports = {key: free_port() for key in ("inference", "management", "metrics", "grpc_inf", "grpc_mgmt", "front")}
        urls = {key: f"http://127.0.0.1:{ports[key]}" for key in ("inference", "management", "metrics", "front")}
        server_env = {
            **os.environ,
            "TS_INFERENCE_ADDRESS": urls["inference"],
            "TS_MANAGEMENT_ADDRESS": urls["management"],
            "TS_METRICS_ADDRESS": urls["metrics"],
            "TS_GRPC_INFERENCE_ADDRESS": "127.0.0.1",
            "TS_GRPC_MANAGEMENT_ADDRESS": "127.0.0.1",
            "TS_GRPC_INFERENCE_PORT": str(ports["grpc_inf"]),
            "TS_GRPC_MANAGEMENT_PORT": str(ports["grpc_mgmt"]),
            "LOG_LOCATION": str(log_dir),
            "METRICS_LOCATION": str(log_dir),
            "TEMP": str(work),
            "TMPDIR": str(work),
            **(env or {}),
        }
        with open(log_dir / "stdout.log", "wb") as output:
            process = start_torchserve(config, model_store, served, server_env, cwd=work, stdout=output, stderr=subprocess.STDOUT)
        server = Server(urls["front"], urls["inference"], urls["management"], urls["metrics"], log_dir, process)
        front = front_settings(config, work / "nginx", log_dir, server_env, listen=f"127.0.0.1:{ports['front']}")
        try:
            wait_until_ready(server.management_url, process, list(served), startup_timeout, log_dir)
            with open(log_dir / "nginx.log", "wb") as output:
                server.front = start_front(front, server_env, output)
            wait_until_serving(server.inference_url, server.front, log_dir / "nginx.log")
            yield server
        finally:
            if server.front is not None:
                stop(server.front)
            stop(process)
