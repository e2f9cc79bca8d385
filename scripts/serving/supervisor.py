"""The production entry point: TorchServe on loopback and the nginx front before it, in the foreground.

``python -m scripts.serving.supervisor`` (what ``scripts/serve.sh`` and the image run) runs
``torchserve --foreground`` with the addresses of ``config.properties`` (or ``TS_*`` overrides)
and, once every model is READY, nginx on the public address of ``DENOISER_LISTEN`` (default
0.0.0.0:8080). SIGTERM or Ctrl-C stops both cleanly, nginx first and gracefully, so the requests
in flight are answered (the ``torchserve`` launcher alone would exit on SIGTERM and leave the Java
frontend and its workers running); if either dies, the other is stopped and the command exits
non-zero, so a container restarts. The tests run the same processes on free loopback ports
through ``scripts.serving.harness``.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.paths import CONFIG, MODEL_STORE
from scripts.serving.front import effective_properties, front_settings
from scripts.serving.processes import POLL_INTERVAL, registrations, start_front, start_torchserve, stop, wait_until_ready, wait_until_serving

# On SIGTERM nginx quits gracefully first (SIGQUIT: it closes its port and finishes the requests in
# flight), for at most this long, and only then is TorchServe stopped: a pod that Kubernetes
# stops answers what it accepted (deploy/kubernetes/base/deployment.yaml's grace period covers
# the preStop pause plus this; docs/scaling.md, "Stopping a replica").
DRAIN_TIMEOUT = 90.0
STARTUP_TIMEOUT = 600.0


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
            processes["TorchServe"] = start_torchserve(config, model_store, served, environ)
            wait_until_ready(properties["management_address"], processes["TorchServe"], list(served), STARTUP_TIMEOUT, log_dir)
            processes["nginx"] = start_front(front, environ)
            wait_until_serving(front.url, processes["nginx"])
            print(f"serving {', '.join(served)} on http://{front.listen} (TorchServe at {properties['inference_address']})", flush=True)
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
