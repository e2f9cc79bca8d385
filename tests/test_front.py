"""The nginx front (``scripts/serving/front.py``, ``nginx/nginx.conf.template``): its configuration, and how
ordinary clients meet it on the session ``server`` (curl and urllib with their default labels, a
body over the limit, the page's files, JSON for every path it refuses, CORS headers once).
"""
from __future__ import annotations

import io
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from models.imaging import MAX_PIXELS
from models.settings import SERVING_CONFIG
from scripts.paths import CONFIG, REPO
from scripts.serving.front import (
    DEFAULT_LISTEN,
    LISTEN_ENV,
    PIXEL_BURST,
    PIXELS_PER_MINUTE,
    POOLS,
    TEMPLATE,
    WEB_ROOT,
    front_settings,
    hidden_pool_suffixes,
    nginx_command,
    read_properties,
    render,
    write_config,
)
from tests.hostile_inputs import encode, noise_image

MODEL = "model_unet"
BODY_LIMIT = int(read_properties(CONFIG)["max_request_size"])


def png_file(folder: Path, size: tuple[int, int] = (40, 32)) -> Path:
    """A small noisy PNG written to ``folder``."""
    path = folder / "photo.png"
    path.write_bytes(encode(noise_image(*size), "PNG"))
    return path


def curl(*args: str) -> tuple[int, bytes]:
    """Run curl (no -H unless given) and return the HTTP status it reports and what it wrote to stdout."""
    result = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True, timeout=300, check=True)
    body, _, status = result.stdout.rpartition(b"\n")
    return int(status), body


def check_json_error(response: requests.Response, status: int) -> dict:
    """A JSON error in the handler's shape with a message a user can act on."""
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    answer = response.json()
    assert answer["code"] == status and answer["type"] and len(answer["message"]) > 10, answer
    return answer


def test_rendered_configuration_passes_nginx_own_check(tmp_path: Path) -> None:
    settings = front_settings(CONFIG, tmp_path / "run", tmp_path, environ={})
    conf = write_config(settings)
    checked = subprocess.run([*nginx_command(conf), "-t"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "{{" not in conf.read_text()


def test_settings_come_from_config_properties_and_follow_overrides(tmp_path: Path) -> None:
    """Upstream, body limit and CORS origin are TorchServe's own settings; TS_* overrides move both together."""
    properties = read_properties(CONFIG)
    default = front_settings(CONFIG, tmp_path, tmp_path, environ={})
    assert default.listen == DEFAULT_LISTEN
    assert f"http://{default.upstream}" == properties["inference_address"]
    assert default.body_limit == int(properties["max_request_size"]) == BODY_LIMIT
    assert default.cors_origin == properties["cors_allowed_origin"]
    text = render(default)
    assert f"client_max_body_size {BODY_LIMIT};" in text and f"server {default.upstream};" in text
    overridden = front_settings(CONFIG, tmp_path, tmp_path, environ={
        "TS_INFERENCE_ADDRESS": "http://127.0.0.1:9999", "TS_MAX_REQUEST_SIZE": "1048576",
        "TS_CORS_ALLOWED_ORIGIN": "https://frontend.example", LISTEN_ENV: "127.0.0.1:9998",
    })
    assert (overridden.upstream, overridden.body_limit, overridden.cors_origin, overridden.listen) == (
        "127.0.0.1:9999", 1048576, "https://frontend.example", "127.0.0.1:9998")
    assert "the body is over the 1 MiB upload limit" in render(overridden)


def test_a_value_that_could_escape_the_configuration_is_refused(tmp_path: Path) -> None:
    settings = front_settings(CONFIG, tmp_path, tmp_path, environ={"TS_CORS_ALLOWED_ORIGIN": 'x" always; include /etc/passwd; #'})
    with pytest.raises(ValueError, match="cors_origin"):
        render(settings)


def test_pools_rise_and_end_with_the_rest() -> None:
    """The pools' bounds grow, only the last takes every size (0), and every hidden pool has its own suffix."""
    bounds = [bound for _, bound in POOLS]
    assert bounds[:-1] == sorted(bounds[:-1]) and 0 not in bounds[:-1] and bounds[-1] == 0
    assert POOLS[0][0] == "" and len(set(hidden_pool_suffixes())) == len(POOLS) - 1 and "" not in hidden_pool_suffixes()


def test_a_full_pixel_bucket_admits_the_largest_accepted_image(tmp_path: Path) -> None:
    """The burst is at least the handler's pixel limit; the gate is configured with these very numbers."""
    assert PIXEL_BURST >= MAX_PIXELS and PIXELS_PER_MINUTE > 0
    text = render(front_settings(CONFIG, tmp_path, tmp_path, environ={}))
    pools = "|".join(f"{suffix}={bound}" for suffix, bound in POOLS)
    assert f'require("gate").configure("{pools}", {PIXELS_PER_MINUTE}, {PIXEL_BURST})' in text
    assert f"({PIXELS_PER_MINUTE / 1e6:g} megapixels a minute)" in text


def test_public_port_is_the_spaces_and_the_images() -> None:
    """nginx's default port is the README's app_port and the port the Dockerfile exposes."""
    port = DEFAULT_LISTEN.rsplit(":", 1)[1]
    assert re.search(rf"^app_port: {port}$", (REPO / "README.md").read_text(), flags=re.MULTILINE)
    assert re.search(rf"^EXPOSE {port}$", (REPO / "Dockerfile").read_text(), flags=re.MULTILINE)


def test_timeouts_fit_the_largest_accepted_image() -> None:
    """nginx waits for TorchServe longer than the archives' responseTimeout (the largest image's budget)."""
    template = TEMPLATE.read_text()
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", template).group(1))
    assert read_timeout > SERVING_CONFIG["responseTimeout"]
    # A body over the limit is drained while the client finishes sending, at 3 Mbit/s at least.
    lingering = int(re.search(r"lingering_time (\d+)s;", template).group(1))
    assert lingering * 3e6 / 8 >= BODY_LIMIT


def test_curl_without_a_content_type_gets_the_png(server: Any, tmp_path: Path) -> None:
    """The README's first try: ``curl --data-binary @x.png URL -o out.png``, no -H."""
    out = tmp_path / "out.png"
    status, _ = curl("--data-binary", f"@{png_file(tmp_path)}", f"{server.inference_url}/predictions/{MODEL}", "-o", str(out))
    assert status == 200
    with Image.open(out) as image:
        assert (image.format, image.size) == ("PNG", (40, 32))


def test_urllib_default_label_gets_the_png(server: Any, tmp_path: Path) -> None:
    """urllib.request labels ``data=`` a form by default; the front passes it on as bytes."""
    request = urllib.request.Request(f"{server.inference_url}/predictions/{MODEL}", data=png_file(tmp_path).read_bytes())
    assert request.get_method() == "POST"
    with urllib.request.urlopen(request, timeout=300) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"] == "image/png"
        assert Image.open(io.BytesIO(answer.read())).size == (40, 32)


def test_curl_reads_a_json_413_for_a_101_mib_body(server: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as out:
        out.truncate(BODY_LIMIT + 2**20)
    status, body = curl("--data-binary", f"@{big}", f"{server.inference_url}/predictions/{MODEL}")
    assert status == 413
    assert b'"code": 413' in body and b"upload limit" in body


def test_page_files_are_served_and_every_other_path_is_a_json_404(server: Any) -> None:
    page = requests.get(f"{server.inference_url}/", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self';")
    assert page.text == (WEB_ROOT / "index.html").read_text()
    for path in sorted(WEB_ROOT.iterdir()):
        assert requests.get(f"{server.inference_url}/{path.name}", timeout=30).status_code == 200, path.name
    for path in ("/nope", "/api/models", "/predictions", "/config.properties", "/index.html/", "/web/index.html"):
        answer = check_json_error(requests.get(f"{server.inference_url}{path}", timeout=30), 404)
        assert "/predictions/<model>" in answer["message"], path


def test_cors_headers_come_once_and_the_fronts_own_errors_carry_them(server: Any) -> None:
    """TorchServe's CORS answers pass through unchanged; nginx's 404 and 413 add the same origin header."""
    origin = {"Origin": "http://page.example"}
    allowed = read_properties(CONFIG)["cors_allowed_origin"]
    png = encode(noise_image(24, 16), "PNG")
    denoised = requests.post(f"{server.inference_url}/predictions/{MODEL}", data=png, headers=origin, timeout=300)
    refused = requests.get(f"{server.inference_url}/nope", headers=origin, timeout=30)
    too_big = requests.post(f"{server.inference_url}/predictions/{MODEL}", data=b"\0" * (BODY_LIMIT + 1), headers=origin, timeout=300)
    for answer, status in ((denoised, 200), (refused, 404), (too_big, 413)):
        assert answer.status_code == status
        assert answer.raw.headers.getlist("Access-Control-Allow-Origin") == [allowed], (status, answer.headers)
