"""Start, watch and stop TorchServe: for tests and benchmarks, and in the foreground for serve.sh.

``running_server`` runs ``torchserve --foreground`` with the project's ``config.properties`` on
free 127.0.0.1 ports (overridden through ``TS_*`` environment variables, which the config allows
with ``enable_envvars_config``), logs and temp files in a private folder, waits until every
model has a READY worker, and stops the whole process group when done.

``python -m scripts.server`` (what ``scripts/serve.sh`` execs) serves ``model_store`` with the
addresses of ``config.properties`` (or ``TS_*`` overrides) and turns SIGTERM or Ctrl-C into a
clean TorchServe shutdown: the ``torchserve`` launcher itself would exit on SIGTERM and leave
the Java frontend and its workers running.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import requests

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config.properties"
STOP_TIMEOUT = 60.0
POLL_INTERVAL = 0.5
# What TorchServe (frontend and worker) logs when a worker dies and is started again.
RESTART_MARKERS = ("Backend worker process died", "Worker disconnected", "Retry worker", "Auto recovery")


@dataclass
class Server:
    """A running TorchServe: its API base URLs, log folder and launcher process."""

    inference_url: str
    management_url: str
    metrics_url: str
    log_dir: Path
    process: subprocess.Popen

    def worker_pids(self, model: str) -> list[int]:
        """Process ids of the model's workers, from the management API."""
        described = requests.get(f"{self.management_url}/models/{model}", timeout=10)
        described.raise_for_status()
        return [worker["pid"] for entry in described.json() for worker in entry.get("workers", [])]

    def worker_log_tail(self, chars: int = 6000) -> str:
        """The end of the workers' log (model_log.log), where handler tracebacks land."""
        path = self.log_dir / "model_log.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no worker log)"

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


def archive_model_names(model_store: Path) -> list[str]:
    """The model names (from each archive's manifest) of every ``.mar`` in ``model_store``."""
    names = []
    for archive in sorted(model_store.glob("*.mar")):
        with zipfile.ZipFile(archive) as packed:
            names.append(json.loads(packed.read("MAR-INF/MANIFEST.json"))["model"]["modelName"])
    return names


def models_value(names: Iterable[str]) -> str:
    """TorchServe's ``--models`` value serving the named models from their archives ("model_unet=UNET.mar,...").

    TorchServe looks for ``<value>.mar`` in the store, and the archives are named after the
    networks (UNET.mar), not the models. ``models`` (which imports torch) is imported here only,
    so serving through ``main`` stays light.
    """
    from models import MODELS

    return ",".join(f"{name}={MODELS[name].archive}.mar" for name in names)


def torchserve_command(config: Path, model_store: Path, models: str) -> list[str]:
    """The ``torchserve --foreground`` command line, run by this interpreter (the venv's)."""
    return [
        sys.executable, "-m", "ts.model_server", "--start", "--foreground", "--ncs",
        "--ts-config", str(config), "--model-store", str(model_store), "--models", models,
    ]


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` is still running."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM the launcher's whole process group (launcher, Java frontend, workers), wait until
    every member has exited, SIGKILL what is left after ``timeout``; returns the launcher's status."""
    deadline = time.monotonic() + timeout
    if group_alive(process.pid):
        os.killpg(process.pid, signal.SIGTERM)
    while group_alive(process.pid) and time.monotonic() < deadline:
        process.poll()
        time.sleep(POLL_INTERVAL)
    if group_alive(process.pid):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def ready_models(management_url: str, names: list[str]) -> set[str]:
    """The subset of ``names`` that has at least one READY worker."""
    ready = set()
    for name in names:
        try:
            answer = requests.get(f"{management_url}/models/{name}", timeout=5)
        except requests.ConnectionError:
            return ready
        if answer.ok and any(w.get("status") == "READY" for entry in answer.json() for w in entry.get("workers", [])):
            ready.add(name)
    return ready


def wait_until_ready(server: Server, names: list[str], timeout: float) -> None:
    """Block until every named model has a READY worker; raise with the logs if TorchServe dies or times out."""
    deadline = time.monotonic() + timeout
    while ready_models(server.management_url, names) != set(names):
        if server.process.poll() is not None:
            raise RuntimeError(f"TorchServe exited with {server.process.returncode}:\n{server.worker_log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"models {names} not READY after {timeout:.0f} s:\n{server.worker_log_tail()}")
        time.sleep(POLL_INTERVAL)


@contextmanager
def running_server(
    model_store: Path,
    models: str = "all",
    config: Path = CONFIG,
    env: dict | None = None,
    startup_timeout: float = 300,
) -> Iterator[Server]:
    """Run TorchServe over ``model_store`` on free loopback ports until the block ends.

    ``models`` is TorchServe's ``--models`` value ("all", or "name=ARCHIVE.mar ..."); ``env``
    adds environment variables (``TS_*`` overrides of ``config``, ``DENOISER_THREADS``...).
    Logs, metrics, worker sockets, the pid file and unpacked archives go to a private temp dir,
    so several servers can run side by side.
    """
    model_store = Path(model_store).resolve()
    names = archive_model_names(model_store) if models.lower() == "all" else [
        item.split("=", 1)[0] if "=" in item else item.removesuffix(".mar")
        for item in re.split(r"[\s,]+", models.strip())
    ]
    with tempfile.TemporaryDirectory(prefix="torchserve-") as tmp:
        work = Path(tmp)
        log_dir = work / "logs"
        log_dir.mkdir()
        ports = {key: free_port() for key in ("inference", "management", "metrics", "grpc_inf", "grpc_mgmt")}
        urls = {key: f"http://127.0.0.1:{ports[key]}" for key in ("inference", "management", "metrics")}
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
            process = subprocess.Popen(
                torchserve_command(Path(config).resolve(), model_store, models),
                cwd=work, env=server_env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        server = Server(urls["inference"], urls["management"], urls["metrics"], log_dir, process)
        try:
            wait_until_ready(server, names, startup_timeout)
            yield server
        finally:
            stop(process)


def serve_foreground(config: Path, model_store: Path, models: str) -> int:
    """Run TorchServe until it exits or this process gets SIGTERM/SIGINT, then stop it cleanly.

    The handler only forwards the signal to TorchServe's process group; waiting happens outside
    it (a wait inside a signal handler would deadlock on the wait already in progress).
    """
    process = subprocess.Popen(torchserve_command(config, model_store, models), start_new_session=True)

    def forward(signum: int, _frame: object) -> None:
        print(f"received signal {signum}: stopping TorchServe", file=sys.stderr, flush=True)
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    process.wait()
    return stop(process)


def main(argv: list[str] | None = None) -> int:
    """Command line: serve a model store in the foreground with config.properties."""
    parser = argparse.ArgumentParser(description="Run TorchServe in the foreground; SIGTERM/Ctrl-C stop it cleanly.")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--model-store", type=Path, default=REPO / "model_store")
    parser.add_argument("--models", default="all", help="TorchServe --models value")
    args = parser.parse_args(argv)
    return serve_foreground(args.config.resolve(), args.model_store.resolve(), args.models)


if __name__ == "__main__":
    sys.exit(main())
