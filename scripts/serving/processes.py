"""What the production supervisor (``scripts.serving.supervisor``) and the test harness
(``scripts.serving.harness``) share: the registrations and the ``torchserve --foreground``
command, nginx started from its rendered configuration (``scripts.serving.front``), waiting until
every registration has a READY worker and the front answers ``/ping``, and stopping a process
group.

Every public model is registered once per worker pool (``registrations``: the public name and the
hidden ``<name>-medium`` and ``<name>-large`` of ``scripts/serving/front.py`` POOLS).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from scripts.serving.front import FrontSettings, hidden_pool_suffixes, nginx_command, write_config

STOP_TIMEOUT = 60.0
POLL_INTERVAL = 0.5
FRONT_TIMEOUT = 30.0
# Three workers share two cores, each with two OpenMP threads: threads that spin while they wait
# (OpenMP's default) starve the other workers' threads. Passive waiting won the load test
# (`python -m scripts.evaluation.loadtest`, docs/performance.md) against spinning, one thread per worker and a
# short spin (GOMP_SPINCOUNT). The environment can still override it.
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
# Loopback needs no proxy, whatever http_proxy says.
LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout: float) -> tuple[int, bytes]:
    """GET ``url`` directly (no proxy): (status, body), error statuses included; raises OSError when nothing answers."""
    try:
        with LOOPBACK_OPENER.open(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


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
    so the supervisor, which imports this module, stays light.
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


def start_torchserve(config: Path, model_store: Path, served: dict[str, str], environ: dict[str, str], **popen: Any) -> subprocess.Popen:
    """Start ``torchserve --foreground`` serving ``served`` in a process group of its own, its workers with
    ``WORKER_ENV`` unless ``environ`` says otherwise; ``popen`` adds ``subprocess.Popen`` arguments (cwd, stdout...)."""
    return subprocess.Popen(torchserve_command(config, model_store, served), env={**WORKER_ENV, **environ},
                            start_new_session=True, **popen)


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


def worker_log_tail(log_dir: Path, chars: int = 6000) -> str:
    """The end of the workers' log (``model_log.log`` in ``log_dir``), where handler tracebacks land."""
    path = log_dir / "model_log.log"
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no worker log)"


def wait_until_ready(management_url: str, process: subprocess.Popen, names: list[str], timeout: float, log_dir: Path) -> None:
    """Block until every named model has a READY worker; raise with the workers' log (in ``log_dir``) if
    TorchServe (``process``) dies or times out."""
    deadline = time.monotonic() + timeout
    while ready_models(management_url, names) != set(names):
        if process.poll() is not None:
            raise RuntimeError(f"TorchServe exited with {process.returncode}:\n{worker_log_tail(log_dir)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"models {names} not READY after {timeout:.0f} s:\n{worker_log_tail(log_dir)}")
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
