"""Scale-out behaviour of the project's own service (docs/scaling.md): KServe's v1 and v2 protocols
through the nginx front and on TorchServe's own paths, the front's limits on them, metrics kept off
the public port, and a SIGTERM that lets the requests in flight finish.
"""
from __future__ import annotations

import base64
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from scripts.evaluation.loadtest import synthetic_photo
from scripts.serving.front import RATE_BURST
from tests.hostile_inputs import encode, noise_image
from tests.test_server import serve_script

pytestmark = pytest.mark.server

MODELS = ("model_unet", "model_runet", "model_arunet")
PNG = encode(noise_image(48, 40), "PNG")
B64 = base64.b64encode(PNG).decode()


def v1_body(*images: bytes) -> dict[str, Any]:
    """A KServe v1 request for ``images``."""
    return {"instances": [{"data": base64.b64encode(image).decode()} for image in images]}


def v2_body(*images: bytes, request_id: str = "test") -> dict[str, Any]:
    """A KServe v2 (Open Inference Protocol) request, one BYTES tensor per image."""
    return {"id": request_id, "inputs": [
        {"name": f"image{index}", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}
        for index, image in enumerate(images)]}


def v1_pngs(answer: requests.Response) -> list[bytes]:
    """The PNGs of a 200 v1 answer."""
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["Content-Type"].startswith("application/json")
    return [base64.b64decode(prediction["b64"]) for prediction in answer.json()["predictions"]]


def v2_pngs(answer: requests.Response) -> list[bytes]:
    """The PNGs of a 200 v2 answer (each output one BYTES element)."""
    assert answer.status_code == 200, answer.text[:300]
    outputs = answer.json()["outputs"]
    assert all(output["datatype"] == "BYTES" and output["shape"] == [1] for output in outputs), outputs
    return [base64.b64decode(output["data"][0]) for output in outputs]


def raw_png(url: str, model: str, image: bytes) -> bytes:
    """The raw-bytes path's answer for ``image``."""
    answer = requests.post(f"{url}/predictions/{model}", data=image, timeout=300)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png", answer.text[:300]
    return answer.content


@pytest.mark.parametrize("model", MODELS)
def test_v1_and_v2_through_the_front_equal_the_raw_answer(server: Any, model: str) -> None:
    url = server.inference_url
    expected = raw_png(url, model, PNG)
    other = encode(noise_image(33, 20), "PNG")
    assert v1_pngs(requests.post(f"{url}/v1/models/{model}:predict", json=v1_body(PNG, other), timeout=300)) == [
        expected, raw_png(url, model, other)]
    v2 = requests.post(f"{url}/v2/models/{model}/infer", json=v2_body(PNG, request_id="abc"), timeout=300)
    assert v2_pngs(v2) == [expected]
    assert v2.json()["id"] == "abc" and v2.json()["model_name"] == model
    assert [output["name"] for output in v2.json()["outputs"]] == ["image0"]


def test_torchserves_own_kserve_paths_answer_too(server: Any) -> None:
    """No envelope in this project's config: the handler reads both protocols on TorchServe's paths, and /predictions/."""
    url, model = server.torchserve_url, MODELS[0]
    expected = raw_png(url, model, PNG)
    assert v1_pngs(requests.post(f"{url}/v1/models/{model}:predict", json=v1_body(PNG), timeout=300)) == [expected]
    assert v2_pngs(requests.post(f"{url}/v2/models/{model}/infer", json=v2_body(PNG), timeout=300)) == [expected]
    assert v1_pngs(requests.post(f"{url}/predictions/{model}", json=v1_body(PNG), timeout=300)) == [expected]


def test_curl_d_without_a_content_type_reaches_the_v1_protocol(server: Any, tmp_path: Path) -> None:
    """curl -d labels the body a form; the front passes a v1/v2 body on as JSON."""
    body = tmp_path / "v1.json"
    body.write_text(f'{{"instances": [{{"data": "{B64}"}}]}}')
    result = subprocess.run(["curl", "-sS", "-d", f"@{body}", f"{server.inference_url}/v1/models/{MODELS[0]}:predict"],
                            capture_output=True, timeout=300, check=True)
    assert result.stdout.startswith(b'{"predictions": [{"b64": "iVBORw0KGgo')


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    (f"/v1/models/{MODELS[0]}:predict", {"instances": [{"data": "%%"}]}, 400, "instances[0].data is not valid base64"),
    (f"/v1/models/{MODELS[0]}:predict", {"instances": [{"data": B64}] * 17}, 413, "at most 16"),
    (f"/v2/models/{MODELS[0]}/infer", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [0.5]}]}, 415, "BYTES"),
    (f"/v2/models/{MODELS[0]}/infer", b'{"inputs": [', 400, "not valid JSON"),
    ("/v1/models/no_such_model:predict", v1_body(PNG), 404, "no_such_model"),
])
def test_protocol_mistakes_get_the_json_errors(server: Any, path: str, body: Any, status: int, words: str) -> None:
    sent = {"data": body} if isinstance(body, bytes) else {"json": body}
    answer = requests.post(f"{server.inference_url}{path}", timeout=300, **sent)
    assert answer.status_code == status and answer.headers["Content-Type"].startswith("application/json"), answer.text[:300]
    assert answer.json()["code"] == status and words in answer.json()["message"], answer.json()


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/models"), ("GET", f"/models/{MODELS[0]}"), ("GET", "/metrics"), ("GET", "/v1/models"),
    ("GET", f"/v1/models/{MODELS[0]}"), ("POST", f"/v1/models/{MODELS[0]}:explain"), ("GET", "/v2"),
    ("GET", "/v2/health/ready"), ("GET", f"/v2/models/{MODELS[0]}"), ("GET", f"/v2/models/{MODELS[0]}/ready"),
    ("POST", f"/v2/models/{MODELS[0]}/explain"), ("POST", f"/v2/repository/models/{MODELS[0]}/load"),
    ("GET", "/v1/models/../../models"), ("POST", f"/v1/models/{MODELS[0]}:predict/extra"),
])
def test_management_metrics_and_other_kserve_paths_are_404_at_the_front(server: Any, method: str, path: str) -> None:
    answer = requests.request(method, f"{server.inference_url}{path}", timeout=30)
    assert answer.status_code == 404 and answer.json()["code"] == 404, (path, answer.status_code, answer.text[:200])


def test_v1_v2_and_predictions_share_one_rate_limit_per_client(server: Any) -> None:
    """The per-client limit counts every inference path together: a client cannot multiply it by switching paths."""
    client = {"X-Forwarded-For": "198.51.100.20"}
    paths = [f"/predictions/{MODELS[0]}", f"/v1/models/{MODELS[0]}:predict", f"/v2/models/{MODELS[0]}/infer"]
    statuses = [requests.post(f"{server.inference_url}{paths[index % 3]}", json={"instances": []}, headers=client,
                              timeout=60).status_code for index in range(RATE_BURST + 4)]
    assert statuses.count(429) >= 3 and 429 not in statuses[:RATE_BURST + 1], statuses
    assert set(statuses) <= {400, 429}, statuses


def test_sigterm_lets_the_requests_in_flight_finish(model_store: Path, tmp_path: Path) -> None:
    """What a pod's grace period must cover: nginx quits gracefully, so requests already accepted are answered."""
    photo = synthetic_photo(1.0, seed=3)
    with serve_script(model_store, tmp_path) as (serving, front, _):
        with ThreadPoolExecutor(3) as pool:
            answers = [pool.submit(requests.post, f"{front}/predictions/{MODELS[0]}", data=photo, timeout=300) for _ in range(3)]
            time.sleep(0.5)
            stopped_at = time.monotonic()
            serving.send_signal(signal.SIGTERM)
            statuses = [answer.result().status_code for answer in answers]
        assert serving.wait(timeout=150) == 0
        drained = time.monotonic() - stopped_at
    print(f"\n3 requests of 1 MP in flight: answered {statuses}, service exited {drained:.1f} s after SIGTERM")
    assert statuses == [200, 200, 200]
