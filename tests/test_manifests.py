"""The Kubernetes manifests (``deploy/kubernetes/``), rendered offline by ``kubectl kustomize``: strictly
valid against the Kubernetes OpenAPI schemas and the kserve SDK's models, and saying what the image,
the config and the docs say (uid, ports, probes, stop sequence, sizes, autoscaling, KServe layout).
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

from scripts.deploy import kserve_layout, kube
from scripts.paths import CONFIG, REPO
from scripts.serving.front import DEFAULT_LISTEN, read_properties
from scripts.serving.supervisor import DRAIN_TIMEOUT

pytestmark = pytest.mark.unit

REASON = kube.missing_tools()


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    """Every kustomization's rendering (YAML text)."""
    if REASON:
        # CI installs the tools (scripts/dev/install_test_tools.sh): there a missing tool is a failure.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(REASON)
    return {name: kube.render_text(name) for name in kube.RENDERINGS}


def documents(name: str) -> list[dict]:
    """The documents of one rendering."""
    return kube.render(name)


def container(deployment: dict) -> dict:
    """The Deployment's one container."""
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_every_rendered_manifest_validates_strictly(rendered: dict[str, str], tmp_path: Path) -> None:
    result = kube.validate(rendered, tmp_path)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 invalid" in result.stdout and "InferenceService/denoiser-v2" in result.stdout


def test_the_validators_refuse_an_unknown_field(tmp_path: Path, rendered: dict[str, str]) -> None:
    """A misspelt field fails both validators (the strictness is real)."""
    deployment = rendered["base"].replace("readinessProbe:", "readynessProbe:")
    service = rendered["kserve-v1"].replace("storageUri:", "storageUrl:")
    result = kube.validate({"deployment": deployment, "isvc": service}, tmp_path)
    assert result.returncode == 1 and "4 valid, 2 invalid" in result.stdout, result.stdout
    assert "readynessProbe" in result.stdout and "storageUrl" in result.stdout


def test_the_pod_runs_as_the_image_does_locked_down(rendered: dict[str, str]) -> None:
    deployment = kube.find(documents("base"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"]
    assert main["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert pod["automountServiceAccountToken"] is False
    mounted = {mount["mountPath"] for mount in main["volumeMounts"]}
    assert {"/tmp", "/home/user/tmp", "/home/user/app/logs"} <= mounted


def test_ports_probes_and_metrics_match_the_image_and_config(rendered: dict[str, str]) -> None:
    docs = documents("base")
    main = container(kube.find(docs, "Deployment"))
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    env = {item["name"]: item["value"] for item in main["env"]}
    assert ports["http"] == int(DEFAULT_LISTEN.rsplit(":", 1)[1])
    assert f"EXPOSE {ports['http']}" in (REPO / "Dockerfile").read_text()
    assert urlparse(env["TS_METRICS_ADDRESS"]).port == ports["metrics"] == urlparse(read_properties(CONFIG)["metrics_address"]).port
    assert env["TS_METRICS_MODE"] == "prometheus"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"] == {"path": "/ping", "port": "http"}, probe
    startup = main["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # three workers' warm-up, measured 30-70 s
    service = kube.find(docs, "Service")
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]  # never the metrics port


def test_the_grace_period_covers_the_pause_and_the_drain(rendered: dict[str, str]) -> None:
    deployment = kube.find(documents("base"), "Deployment")
    pause = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= int(pause[1]) + DRAIN_TIMEOUT + 10


def test_resources_and_autoscaling(rendered: dict[str, str]) -> None:
    docs = documents("base")
    resources = container(kube.find(docs, "Deployment"))["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == "2"
    # docs/scaling.md: nine workers idle at 3.2 GiB; three 40 MP photos at once fit under the limit.
    assert resources["requests"]["memory"] == "4Gi" and resources["limits"]["memory"] == "6Gi"
    hpa = kube.find(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["scaleTargetRef"]["name"] == "denoiser"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in kube.find(docs, "Deployment")["spec"]  # the autoscaler owns the count
    assert kube.find(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    queue = kube.find(documents("queue-autoscaling"), "HorizontalPodAutoscaler")
    assert queue["spec"]["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "ts_queue_requests"},
                                                                  "target": {"type": "AverageValue", "averageValue": "1"}}}]
    rules = (kube.RENDERINGS["queue-autoscaling"] / "prometheus-adapter-rules.yaml").read_text()
    assert "rate(<<.Series>>" in rules and 'as: "ts_queue_requests"' in rules


@pytest.mark.parametrize(("name", "protocol", "envelope"), [("kserve-v1", "v1", "kserve"), ("kserve-v2", "v2", "kservev2")])
def test_the_inference_services_use_the_torchserve_runtime(rendered: dict[str, str], name: str, protocol: str, envelope: str) -> None:
    (service,) = documents(name)
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "pytorch" and model["protocolVersion"] == protocol
    assert model["storageUri"].startswith("pvc://")
    assert service["metadata"]["labels"]["serviceEnvelope"] == envelope and envelope in kserve_layout.ENVELOPES
    # KServe's runtime starts three workers (no front, no pools): the Deployment's CPU, half its memory.
    deployment = container(kube.find(documents("base"), "Deployment"))["resources"]
    assert model["resources"]["requests"]["cpu"] == model["resources"]["limits"]["cpu"] == deployment["limits"]["cpu"]
    assert (model["resources"]["requests"]["memory"], model["resources"]["limits"]["memory"]) == ("2Gi", "4Gi")
