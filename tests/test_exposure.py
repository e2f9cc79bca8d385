"""What the service exposes: loopback-only management/metrics, no remote model registration,
no unpickling of anything a user can send, a non-root container user, and enforced size limits.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil
import requests

from models.imaging import MAX_PIXELS
from scripts.paths import CONFIG, REPO
from scripts.serving.front import read_properties
from scripts.serving.processes import registrations

CODE_DIRS = ("models", "scripts", "tests")
CODE_FILES = ("handler.py",)
# (pattern, why it is unsafe). torch.load is only safe with weights_only=True.
UNSAFE_CODE = (
    (r"\bimport\s+(c?pickle|dill|cloudpickle|marshal|shelve)\b", "a pickle-family module is imported"),
    (r"\bfrom\s+(c?pickle|dill|cloudpickle|marshal|shelve)\s+import\b", "a pickle-family module is imported"),
    (r"\bpickle\.loads?\(", "pickle.load unpickles arbitrary objects"),
    (r"\btorch\.load\((?![^)]*weights_only\s*=\s*True)", "torch.load without weights_only=True unpickles"),
    (r"allow_pickle\s*=\s*True", "numpy.load with allow_pickle=True unpickles"),
    (r"\bjoblib\.load\(", "joblib.load unpickles"),
    (r"\byaml\.(unsafe_)?load\((?![^)]*SafeLoader)", "yaml.load without SafeLoader builds arbitrary objects"),
    (r"(?<![\w.])eval\(", "eval runs arbitrary code"),
)
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(host, port) of every TCP socket listening in the process tree rooted at ``pid``."""
    root = psutil.Process(pid)
    found = set()
    for process in [root, *root.children(recursive=True)]:
        for connection in process.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN:
                found.add((connection.laddr.ip, connection.laddr.port))
    return found


def test_deployment_config_keeps_torchserve_on_loopback() -> None:
    """Only nginx listens publicly: every TorchServe API, inference included, binds 127.0.0.1."""
    config = read_properties(CONFIG)
    for key in ("inference_address", "management_address", "metrics_address"):
        assert urlparse(config[key]).hostname == "127.0.0.1", key
    for key in ("grpc_inference_address", "grpc_management_address"):
        assert config.get(key) == "127.0.0.1", key
    assert config.get("enable_model_api", "false") == "false"


def test_every_listening_socket_of_the_server_is_on_loopback(server: Any) -> None:
    addresses = listening_addresses(server.process.pid) | listening_addresses(server.front.pid)
    urls = (server.inference_url, server.torchserve_url, server.management_url, server.metrics_url)
    ports = {urlparse(url).port for url in urls}
    assert ports <= {port for _, port in addresses}, addresses
    assert {host for host, _ in addresses} <= LOOPBACK, addresses


def test_registering_a_model_from_a_url_is_refused(server: Any, model_store: Path) -> None:
    for url in ("https://example.com/evil.mar", "file:///etc/passwd", "http://127.0.0.1:9/evil.mar"):
        response = requests.post(f"{server.management_url}/models", params={"url": url}, timeout=60)
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text)
        assert response.json().get("message")
    listed = requests.get(f"{server.management_url}/models", timeout=60).json()["models"]
    assert {entry["modelName"] for entry in listed} == set(registrations(model_store, "all"))


def test_models_cannot_be_unregistered_over_the_management_api(server: Any) -> None:
    response = requests.delete(f"{server.management_url}/models/model_unet", timeout=60)
    assert 400 <= response.status_code < 500, response.text
    assert requests.get(f"{server.management_url}/models/model_unet", timeout=60).status_code == 200


def test_no_code_path_unpickles_user_supplied_bytes() -> None:
    files = [REPO / name for name in CODE_FILES]
    files += [path for folder in CODE_DIRS for path in sorted((REPO / folder).rglob("*.py"))]
    findings = []
    for path in files:
        if path.name == "test_exposure.py":
            continue
        text = path.read_text()
        for pattern, why in UNSAFE_CODE:
            for match in re.finditer(pattern, text):
                line = text.count("\n", 0, match.start()) + 1
                findings.append(f"{path.relative_to(REPO)}:{line}: {why}")
    assert not findings, "\n".join(findings)
    assert "load_file" in (REPO / "models" / "registry.py").read_text(), "weights must load with safetensors"


def test_the_image_runs_as_a_non_root_user() -> None:
    # The last stage's last USER is what the server runs as (tests/test_container.py checks the
    # running container's processes; this holds wherever podman is missing).
    stages = (REPO / "Dockerfile").read_text().split("\nFROM ")
    users = re.findall(r"^USER\s+(\S+)", stages[-1], flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}, users


def test_size_limits_are_set_and_consistent() -> None:
    config = read_properties(CONFIG)
    request_limit, response_limit = int(config["max_request_size"]), int(config["max_response_size"])
    assert 0 < request_limit <= 256 * 1024 * 1024
    # The largest accepted image, 8-bit RGBA that does not compress, must fit in one response
    # (TorchServe kills the worker over the limit): 4 bytes a pixel, 1% for row filters, deflate
    # and chunk framing, 1 MiB for headers and a colour profile.
    worst_png = int(4 * MAX_PIXELS * 1.01) + 1024 * 1024
    assert response_limit >= worst_png, f"max_response_size {response_limit} < worst-case PNG {worst_png}"


def test_a_body_over_the_request_limit_gets_413(server: Any) -> None:
    limit = int(read_properties(CONFIG)["max_request_size"])
    response = requests.post(
        f"{server.inference_url}/predictions/model_unet", data=b"\0" * (limit + 1), timeout=120
    )
    assert response.status_code == 413
    assert f"{limit / 2**20:g} MiB" in response.json()["message"]
