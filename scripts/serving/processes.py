"""Start, watch and stop the service: TorchServe on loopback and the nginx front before it.

``running_server`` runs ``torchserve --foreground`` with the project's ``config.properties`` on
free 127.0.0.1 ports (overridden through ``TS_*`` environment variables, which the config allows
with ``enable_envvars_config``), logs and temp files in a private folder, registers every model
once per worker pool (``registrations``: the public name and the hidden ``<name>-medium`` and
``<name>-large`` of ``scripts/serving/front.py`` POOLS), waits until every registration has a READY
worker, then starts nginx (``scripts/serving/front.py``) on another free loopback port, and stops both
process groups when done. Clients use ``Server.inference_url``, the front;
``Server.torchserve_url`` is TorchServe itself.

``python -m scripts.serving.processes`` (what ``scripts/serve.sh`` and the image run) does the same in the
foreground with the addresses of ``config.properties`` (or ``TS_*`` overrides) and the public
address of ``DENOISER_LISTEN`` (default 0.0.0.0:8080): TorchServe first, nginx once every model
is READY. SIGTERM or Ctrl-C stops both cleanly, nginx first and gracefully, so the requests in
flight are answered (the ``torchserve`` launcher alone would exit on SIGTERM and leave the Java
frontend and its workers running); if either dies, the other is stopped and the command exits
non-zero, so a container restarts.
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
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from scripts.paths import CONFIG, MODEL_STORE
from scripts.serving.front import FrontSettings, effective_properties, front_settings, hidden_pool_suffixes, nginx_command, write_config

STOP_TIMEOUT = 60.0
# On SIGTERM nginx quits gracefully first (SIGQUIT: it closes its port and finishes the requests in
# flight), for at most this long, and only then is TorchServe stopped: a pod that Kubernetes
# stops answers what it accepted (deploy/kubernetes/base/deployment.yaml's grace period covers
# the preStop pause plus this; docs/scaling.md, "Stopping a replica").
DRAIN_TIMEOUT = 90.0
POLL_INTERVAL = 0.5
STARTUP_TIMEOUT = 600.0
FRONT_TIMEOUT = 30.0
# Three workers share two cores, each with two OpenMP threads: threads that spin while they wait
# (OpenMP's default) starve the other workers' threads. Passive waiting won the load test
# (`python -m scripts.evaluation.loadtest`, README "Models") against spinning, one thread per worker and a
# short spin (GOMP_SPINCOUNT). The environment can still override it.
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
# What TorchServe (frontend and worker) logs when a worker dies and is started again.
RESTART_MARKERS = ("Backend worker process died", "Worker disconnected", "Retry worker", "Auto recovery")
# Loopback needs no proxy, whatever http_proxy says.
LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout: float) -> tuple[int, bytes]:
    """GET ``url`` directly (no proxy): (status, body), error statuses included; raises OSError when nothing answers."""
    try:
        with LOOPBACK_OPENER.open(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


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


def archive_model_names(model_store: Path) -> dict[str, str]:
    """Each ``.mar`` of ``model_store`` by the model name its manifest gives it ({"model_unet": "UNET.mar", ...})."""
    names = {}
    for archive in sorted(model_store.glob("*.mar")):
        with zipfile.ZipFile(archive) as packed:
            names[json.loads(packed.read("MAR-INF/MANIFEST.json"))["model"]["modelName"]] = archive.name
    return names


def models_value(names: Iterable[str]) -> str:
    """TorchServe's ``--models`` value serving the named models from their archives ("model_unet=UNET.mar,...").

    TorchServe looks for ``<value>.mar`` in the store, and the archives are named after the
    networks (UNET.mar), not the models. ``models`` (which imports torch) is imported here only,
    so serving through ``main`` stays light.
    """
    from models import MODELS

    return ",".join(f"{name}={MODELS[name].archive}.mar" for name in names)


def registrations(model_store: Path, models: str) -> dict[str, str]:
    """Every registration a ``--models`` value ("all", or "name=ARCHIVE.mar,...") leads to, name -> archive.

    Each public model comes with its hidden pools (``scripts.serving.front.POOLS``): the same archive
    registered again as ``<name><suffix>``, with a worker of its own for larger images.
    """
    if models.lower() == "all":
        public = archive_model_names(model_store)
    else:
        items = [item.partition("=") for item in re.split(r"[\s,]+", models.strip()) if item]
        public = {name if archive else name.removesuffix(".mar"): archive or name for name, _, archive in items}
    return {f"{name}{suffix}": archive for name, archive in public.items() for suffix in ("", *hidden_pool_suffixes())}


def torchserve_command(config: Path, model_store: Path, served: dict[str, str]) -> list[str]:
    """The ``torchserve --foreground`` command line serving ``served`` (name -> archive), run by this interpreter (the venv's)."""
    models = ",".join(f"{name}={archive}" for name, archive in served.items())
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


def stop(process: subprocess.Popen, timeout: float = STOP_TIMEOUT, signum: int = signal.SIGTERM) -> int:
    """Signal the launcher's whole process group (launcher, Java frontend, workers) with ``signum``, wait
    until every member has exited, SIGKILL what is left after ``timeout``; returns the launcher's status."""
    deadline = time.monotonic() + timeout
    if group_alive(process.pid):
        os.killpg(process.pid, signum)
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
            status, body = get(f"{management_url}/models/{name}", timeout=5)
        except OSError:
            return ready
        if status == 200 and any(w.get("status") == "READY" for entry in json.loads(body) for w in entry.get("workers", [])):
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


def start_front(settings: FrontSettings, environ: dict[str, str], output: IO[bytes] | None = None) -> subprocess.Popen:
    """Render the nginx configuration for ``settings`` into its run folder and start nginx there.

    nginx's own messages go to ``output`` (default: this process's stdout and stderr).
    """
    command = nginx_command(write_config(settings))
    stderr = subprocess.STDOUT if output is not None else None
    return subprocess.Popen(command, env=environ, stdout=output, stderr=stderr, start_new_session=True)


def wait_until_serving(url: str, front: subprocess.Popen, log: Path | None = None, timeout: float = FRONT_TIMEOUT) -> None:
    """Block until the front at ``url`` answers ``/ping`` with 200; raise (with ``log``'s end) if nginx exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if get(f"{url}/ping", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        if front.poll() is not None or time.monotonic() > deadline:
            detail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
            state = f"exited with {front.returncode}" if front.returncode is not None else f"not serving after {timeout:.0f} s"
            raise RuntimeError(f"nginx {state} ({url}/ping):\n{detail}")
        time.sleep(POLL_INTERVAL)


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
            **WORKER_ENV,
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
                torchserve_command(config, model_store, served),
                cwd=work, env=server_env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        server = Server(urls["front"], urls["inference"], urls["management"], urls["metrics"], log_dir, process)
        front = front_settings(config, work / "nginx", log_dir, server_env, listen=f"127.0.0.1:{ports['front']}")
        try:
            wait_until_ready(server, list(served), startup_timeout)
            with open(log_dir / "nginx.log", "wb") as output:
                server.front = start_front(front, server_env, output)
            wait_until_serving(server.inference_url, server.front, log_dir / "nginx.log")
            yield server
        finally:
            if server.front is not None:
                stop(server.front)
            stop(process)


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived: raised in the main thread by ``raise_stopped`` (a BaseException,
    like KeyboardInterrupt, so that no ``except Exception`` on the way swallows it)."""


def raise_stopped(signum: int, _frame: object) -> None:
    """Signal handler: interrupt whatever the main thread waits on (start-up or supervision)."""
    raise Stopped(signal.Signals(signum).name)


def first_exit(processes: dict[str, subprocess.Popen]) -> tuple[str, int]:
    """Block until one of the named processes exits; return its name and exit status."""
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                return name, process.returncode
        time.sleep(POLL_INTERVAL)


def serve_foreground(config: Path, model_store: Path, models: str, listen: str | None = None) -> int:
    """Serve until SIGTERM/SIGINT (exit 0) or until TorchServe or nginx dies (exit 1); stop both either way.

    TorchServe starts first on its loopback address; nginx starts once every model is READY,
    so the public port opens on a service that can answer. Logs go to ``LOG_LOCATION`` (or
    ``logs/``), as TorchServe's do; nginx's own messages to this process's stderr.
    """
    served = registrations(model_store, models)
    environ = dict(os.environ)
    properties = effective_properties(config, environ)
    log_dir = Path(environ.get("LOG_LOCATION") or "logs").resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: dict[str, subprocess.Popen] = {}
    signal.signal(signal.SIGTERM, raise_stopped)
    signal.signal(signal.SIGINT, raise_stopped)
    with tempfile.TemporaryDirectory(prefix="nginx-") as run_dir:
        front = front_settings(config, Path(run_dir), log_dir, environ, listen=listen)
        try:
            processes["TorchServe"] = subprocess.Popen(torchserve_command(config, model_store, served),
                                                       env={**WORKER_ENV, **environ}, start_new_session=True)
            server = Server(front.url, properties["inference_address"], properties["management_address"],
                            properties["metrics_address"], log_dir, processes["TorchServe"])
            wait_until_ready(server, list(served), STARTUP_TIMEOUT)
            processes["nginx"] = start_front(front, environ)
            wait_until_serving(front.url, processes["nginx"])
            print(f"serving {', '.join(served)} on http://{front.listen} (TorchServe at {server.torchserve_url})", flush=True)
            name, status = first_exit(processes)
            print(f"{name} exited with {status}: stopping the service", file=sys.stderr, flush=True)
            return 1
        except Stopped as stopped:
            print(f"received {stopped}: stopping nginx and TorchServe", file=sys.stderr, flush=True)
            return 0
        except (RuntimeError, TimeoutError) as failed:
            print(f"start-up failed: {failed}", file=sys.stderr, flush=True)
            return 1
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if "nginx" in processes:
                stop(processes["nginx"], DRAIN_TIMEOUT, signal.SIGQUIT)
            for process in reversed(processes.values()):
                stop(process)


def main(argv: list[str] | None = None) -> int:
    """Command line: serve a model store in the foreground behind the nginx front."""
    parser = argparse.ArgumentParser(description="Run TorchServe and its nginx front in the foreground; SIGTERM/Ctrl-C stop both.")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--model-store", type=Path, default=MODEL_STORE)
    parser.add_argument("--models", default="all", help="TorchServe --models value")
    parser.add_argument("--listen", help="public address host:port (default: $DENOISER_LISTEN or 0.0.0.0:8080)")
    args = parser.parse_args(argv)
    return serve_foreground(args.config.resolve(), args.model_store.resolve(), args.models, args.listen)


if __name__ == "__main__":
    sys.exit(main())
