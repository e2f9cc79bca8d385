"""The archives on KServe's TorchServe runtime, started the way the runtime starts them.

``python -m scripts.deploy.kserve_layout`` lays the session's archives out as KServe mounts a
``storageUri`` (``model-store/*.mar``, ``config/config.properties``); TorchServe is then started
with the runtime's own arguments (``torchserve --start --model-store=<mount>/model-store
--ts-config=<mount>/config/config.properties``) and ``TS_SERVICE_ENVELOPE`` as the runtime sets it
from the ``serviceEnvelope`` label: empty (no label), ``kserve`` or ``kservev2``. Only the
addresses are moved to free loopback ports, through the ``TS_*`` variables the config enables.
Every model answers v1 and v2 on TorchServe's KServe paths with the raw-bytes path's PNG.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from scripts.deploy import kserve_layout
from scripts.paths import CONFIG
from scripts.serving.front import read_properties
from scripts.serving.harness import free_port
from scripts.serving.processes import archive_model_names, group_alive, ready_models
from tests.hostile_inputs import encode, noise_image
from tests.test_scaling import v1_body, v1_pngs, v2_body, v2_pngs

pytestmark = pytest.mark.server

TORCHSERVE = str(Path(sys.executable).parent / "torchserve")
STARTUP_TIMEOUT = 420
PNG = encode(noise_image(56, 44), "PNG")
CHOICE = re.compile(r"denoiser (\w+) \(registered as \1\) on \S+ \(.*?\) with \d+ threads serves (fp32|bf16): ")


@dataclass
class Runtime:
    """A TorchServe started as KServe's runtime starts it: its inference URL, metrics URL and logs."""

    url: str
    metrics_url: str
    log_dir: Path



def served_precisions(log_dir: Path) -> dict[str, str]:
    """The graph each model's worker of a server logging to ``log_dir`` chose."""
    return dict(CHOICE.findall((log_dir / "model_log.log").read_text(errors="replace")))


@pytest.fixture(scope="module")
def mount(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The storage laid out from the session's archives, where KServe would mount it (/mnt/models)."""
    root = tmp_path_factory.mktemp("kserve") / "mnt" / "models"
    kserve_layout.lay_out(root, model_store=model_store)
    return root


@contextmanager
def kserve_runtime(mount: Path, work: Path, envelope: str) -> Iterator[Runtime]:
    """Run ``torchserve --start`` with the runtime's arguments and ``TS_SERVICE_ENVELOPE=envelope`` until every model is READY."""
    ports = {name: free_port() for name in ("inference", "metrics", "grpc_inference", "grpc_management")}
    log_dir = work / "logs"
    log_dir.mkdir(parents=True)
    inference = f"http://127.0.0.1:{ports['inference']}"
    env = {
        **os.environ,
        kserve_layout.ENVELOPE_ENV: envelope,
        "TS_INFERENCE_ADDRESS": inference,
        "TS_MANAGEMENT_ADDRESS": inference,
        "TS_METRICS_ADDRESS": f"http://127.0.0.1:{ports['metrics']}",
        "TS_GRPC_INFERENCE_PORT": str(ports["grpc_inference"]),
        "TS_GRPC_MANAGEMENT_PORT": str(ports["grpc_management"]),
        "LOG_LOCATION": str(log_dir), "METRICS_LOCATION": str(log_dir), "TMPDIR": str(work), "TEMP": str(work),
    }
    names = list(archive_model_names(mount / kserve_layout.STORE_DIR))
    with open(log_dir / "launcher.log", "wb") as output:
        launcher = subprocess.Popen(kserve_layout.runtime_command(TORCHSERVE, mount), cwd=work, env=env, stdout=output,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            assert launcher.wait(timeout=120) == 0, (log_dir / "launcher.log").read_text()
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while ready_models(inference, names) != set(names):
                assert time.monotonic() < deadline, f"not READY after {STARTUP_TIMEOUT} s"
                time.sleep(1)
            yield Runtime(inference, f"http://127.0.0.1:{ports['metrics']}", log_dir)
        finally:
            subprocess.run([TORCHSERVE, "--stop"], cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=120)
            deadline = time.monotonic() + 30
            while group_alive(launcher.pid) and time.monotonic() < deadline:
                time.sleep(0.5)
            if group_alive(launcher.pid):
                os.killpg(launcher.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def baseline(server: Any, model_store: Path) -> dict[str, tuple[bytes, str]]:
    """The raw-bytes path's PNG for ``PNG`` and the precision it was made at, per model, from the session server."""
    chosen = served_precisions(server.log_dir)
    answers = {}
    for model in archive_model_names(model_store):
        answer = requests.post(f"{server.torchserve_url}/predictions/{model}", data=PNG, timeout=300)
        assert answer.status_code == 200
        answers[model] = (answer.content, chosen[model])
    return answers


def assert_same_answer(png: bytes, expected: bytes, precision: str, expected_precision: str) -> None:
    """``png`` is the raw path's PNG bit for bit, made at the same precision: both servers take this machine's
    one decision (``models.choice_cache``, the session's ``DENOISER_CACHE_DIR``)."""
    assert precision == expected_precision
    assert png == expected


def test_the_layout_is_what_the_runtime_mounts(mount: Path, model_store: Path) -> None:
    stored = sorted(path.name for path in (mount / "model-store").iterdir())
    assert stored == sorted(path.name for path in model_store.glob("*.mar"))
    for name in stored:
        assert (mount / "model-store" / name).read_bytes() == (model_store / name).read_bytes()
    config = read_properties(mount / "config" / "config.properties")
    project = read_properties(CONFIG)
    assert config["inference_address"] == "http://127.0.0.1:8085" and config["metrics_address"] == "http://0.0.0.0:8082"
    assert (config["metrics_mode"], config["enable_metrics_api"], config["enable_envvars_config"]) == ("prometheus", "true", "true")
    assert config["model_store"] == "/mnt/models/model-store" and config["service_envelope"] == ""
    assert set(kserve_layout.model_snapshot(sorted((mount / "model-store").glob("*.mar")))["models"]) == set(
        archive_model_names(model_store))
    for key in ("max_request_size", "max_response_size", "job_queue_size", "enable_model_api", "disable_token_authorization"):
        assert config[key] == project[key], key


def test_without_a_label_every_model_answers_v1_v2_and_raw_bytes_alike(mount: Path, tmp_path: Path) -> None:
    """No serviceEnvelope label: TS_SERVICE_ENVELOPE is empty and the handler reads each protocol itself."""
    with kserve_runtime(mount, tmp_path, "") as runtime:
        for model in archive_model_names(mount / "model-store"):
            raw = requests.post(f"{runtime.url}/predictions/{model}", data=PNG, timeout=300)
            assert raw.status_code == 200 and raw.headers["Content-Type"] == "image/png"
            v1 = requests.post(f"{runtime.url}/v1/models/{model}:predict", json=v1_body(PNG), timeout=300)
            v2 = requests.post(f"{runtime.url}/v2/models/{model}/infer", json=v2_body(PNG), timeout=300)
            assert v1_pngs(v1) == v2_pngs(v2) == [raw.content], model
        refused = requests.post(f"{runtime.url}/v1/models/{model}:predict", json={"instances": [{"b64": "%"}]}, timeout=60)
        assert (refused.status_code, refused.json()["type"]) == (400, "Bad Request")
        metrics = prometheus_text(runtime, ("DenoiseTime", "TilesProcessed", "InputMegapixels", "ts_queue_latency_microseconds"))
        assert re.search(r'^ts_queue_latency_microseconds\{model_name="model_unet"', metrics, re.MULTILINE)


def prometheus_text(runtime: Runtime, names: tuple[str, ...], timeout: float = 60) -> str:
    """The metrics API's Prometheus text once every named metric has a sample (workers report them asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        text = requests.get(f"{runtime.metrics_url}/metrics", timeout=30).text
        missing = [name for name in names if not re.search(rf"^{name}\{{", text, re.MULTILINE)]
        if not missing:
            return text
        assert time.monotonic() < deadline, f"no samples of {missing} in:\n{text[:3000]}"
        time.sleep(1)


@pytest.mark.parametrize(("envelope", "protocol"), [("kserve", "v1"), ("kservev2", "v2")])
def test_under_the_labels_envelope_every_model_answers_its_protocol(
        mount: Path, tmp_path: Path, baseline: dict[str, tuple[bytes, str]], envelope: str, protocol: str) -> None:
    """serviceEnvelope: kserve (v1) or kservev2 (v2): TorchServe's envelope unwraps, the handler answers each image."""
    with kserve_runtime(mount, tmp_path, envelope) as runtime:
        chosen = served_precisions(runtime.log_dir)
        for model, (expected, expected_precision) in baseline.items():
            if protocol == "v1":
                answer = requests.post(f"{runtime.url}/v1/models/{model}:predict", json=v1_body(PNG, PNG), timeout=300)
                pngs = v1_pngs(answer)
            else:
                answer = requests.post(f"{runtime.url}/v2/models/{model}/infer", json=v2_body(PNG, PNG, request_id="r1"), timeout=300)
                pngs = v2_pngs(answer)
                assert (answer.json()["id"], answer.json()["model_name"]) == ("r1", model)
            assert len(pngs) == 2 and pngs[0] == pngs[1]
            assert_same_answer(pngs[0], expected, chosen[model], expected_precision)
        if protocol == "v1":
            path, bad, status = f"/v1/models/{model}:predict", {"instances": [{"data": "%%%"}]}, 400
        else:
            path, bad, status = f"/v2/models/{model}/infer", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [0.5]}]}, 415
        refused = requests.post(f"{runtime.url}{path}", json=bad, timeout=60)
        assert refused.status_code == status and refused.json()["code"] == status, refused.text
        assert refused.json()["message"].startswith("instances[0].data" if protocol == "v1" else "inputs[0] ('x')"), refused.text
