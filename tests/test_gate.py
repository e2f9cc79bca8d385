"""The front's gate (``nginx/gate.lua``) on the session ``server``: each image goes to the worker pool
of its size as its header declares it, in every format the gate reads; hidden pools are not
reachable by name; a client over its pixel budget gets a JSON 429 with Retry-After before any
worker sees the request, while other clients and loopback callers are served.

Which pool answered is read from TorchServe's access log, which names the registration.
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter
from typing import Any

import pytest
import requests
from PIL import Image

from scripts.serving.front import PIXEL_BURST, PIXELS_PER_MINUTE, POOLS
from tests.hostile_inputs import encode, noise_image, png_header_only
from tests.test_scaling import v1_body, v2_body

pytestmark = pytest.mark.server

MODEL = "model_unet"
FIRST_BOUND = POOLS[0][1]
PUBLIC, MEDIUM = f"{MODEL}{POOLS[0][0]}", f"{MODEL}{POOLS[1][0]}"
LAST = f"{MODEL}{POOLS[-1][0]}"
ACCESS = re.compile(r'"POST /(?:predictions/([^/ ]+)|v1/models/([^/: ]+):predict|v2/models/([^/ ]+)/infer)[^"]*" (\d+)')


def pool_hits(server: Any, bookmark: dict[str, int]) -> Counter:
    """(registration, status) of every request TorchServe logged since ``bookmark`` (``Server.log_sizes``)."""
    with open(server.log_dir / "access_log.log", "rb") as log:
        log.seek(bookmark.get("access_log.log", 0))
        found = ACCESS.findall(log.read().decode(errors="replace"))
    return Counter(("".join(names), int(status)) for *names, status in found)


def served_by(server: Any, body: bytes, headers: dict[str, str] | None = None) -> tuple[requests.Response, Counter]:
    """POST ``body`` through the front; the answer and which registrations TorchServe logged for it."""
    bookmark = server.log_sizes()
    answer = requests.post(f"{server.inference_url}/predictions/{MODEL}", data=body, headers=headers or {}, timeout=300)
    return answer, pool_hits(server, bookmark)


def jpeg_with_large_profile(image: Image.Image) -> bytes:
    """A JPEG whose start-of-frame comes after 150 kB of ICC profile segments (past the gate's first read)."""
    return encode(image, "JPEG", icc_profile=b"\0" * 150_000)


ENCODERS = {
    "PNG": lambda image: encode(image, "PNG"),
    "JPEG": jpeg_with_large_profile,
    "GIF": lambda image: encode(image.convert("P"), "GIF"),
    "BMP": lambda image: encode(image, "BMP"),
    "WEBP lossy": lambda image: encode(image, "WEBP", quality=50),
    "WEBP lossless": lambda image: encode(image, "WEBP", lossless=True, method=0),
    "TIFF": lambda image: encode(image, "TIFF"),
}


@pytest.mark.parametrize("fmt", sorted(ENCODERS))
def test_each_image_goes_to_the_pool_of_its_pixel_count(server: Any, fmt: str) -> None:
    """Exactly the first pool's bound stays public; one row more goes to the next pool; both are denoised."""
    width = 1000
    for height, pool in ((FIRST_BOUND // width, PUBLIC), (FIRST_BOUND // width + 1, MEDIUM)):
        answer, hits = served_by(server, ENCODERS[fmt](noise_image(width, height)))
        assert answer.status_code == 200, answer.text[:300]
        assert hits == Counter({(pool, 200): 1}), (fmt, height, hits)


def test_a_body_the_gate_cannot_read_goes_to_the_last_pool(server: Any) -> None:
    answer, hits = served_by(server, b"not an image at all")
    assert answer.status_code == 415
    assert hits == Counter({(LAST, 415): 1})


@pytest.mark.parametrize("suffix", [suffix for suffix, _ in POOLS[1:]])
def test_hidden_pools_are_not_reachable_by_name(server: Any, suffix: str) -> None:
    png = encode(noise_image(8, 8), "PNG")
    for path in (f"{MODEL}{suffix}", f"{MODEL}{suffix}/1.0", f"{MODEL}%2D{suffix.lstrip('-')}"):
        bookmark = server.log_sizes()
        answer = requests.post(f"{server.inference_url}/predictions/{path}", data=png, timeout=60)
        assert answer.status_code == 404 and answer.json()["code"] == 404, (path, answer.text)
        assert pool_hits(server, bookmark) == Counter(), path


def test_a_client_over_its_pixel_budget_gets_429_without_costing_a_worker(server: Any) -> None:
    """A 36 MP header (answered 400 by the worker at once, as its pixels are missing) spends most of
    the bucket; the next one is refused at the front with the wait until it fits. A small photo
    from the same client still fits; another client and loopback are served meanwhile."""
    client, other = {"X-Forwarded-For": "203.0.113.40"}, {"X-Forwarded-For": "203.0.113.41"}
    declared = png_header_only(6000, 6000)
    first, hits = served_by(server, declared, client)
    spent_at = time.monotonic()
    assert first.status_code == 400 and hits == Counter({(LAST, 400): 1}), (first.text, hits)
    refused, hits = served_by(server, declared, client)
    waited = time.monotonic() - spent_at
    assert hits == Counter(), hits
    assert refused.status_code == 429 and refused.headers["Content-Type"].startswith("application/json")
    assert refused.json()["code"] == 429 and "image budget" in refused.json()["message"], refused.text
    rate = PIXELS_PER_MINUTE / 60
    expected = (6000 * 6000 - (PIXEL_BURST - 6000 * 6000)) / rate
    assert expected - waited - 2 <= int(refused.headers["Retry-After"]) <= math.ceil(expected), refused.headers
    assert f"try again in {refused.headers['Retry-After']} s" in refused.json()["message"]
    small = encode(noise_image(40, 30), "PNG")
    for headers in (client, other, {}):
        answer, hits = served_by(server, small, headers)
        assert answer.status_code == 200 and hits == Counter({(PUBLIC, 200): 1}), (headers, hits)


def kserve_body(protocol: str, image: bytes) -> dict[str, Any]:
    """``image`` as a KServe v1 or v2 request body."""
    return v1_body(image) if protocol == "v1" else v2_body(image)


def kserve_url(server: Any, protocol: str, name: str) -> str:
    """The front's v1 or v2 inference URL of registration ``name``."""
    path = f"v1/models/{name}:predict" if protocol == "v1" else f"v2/models/{name}/infer"
    return f"{server.inference_url}/{path}"


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_kserve_requests_are_gated_like_raw_ones(server: Any, protocol: str) -> None:
    """The first image's header in the base64 picks the pool; hidden names are 404; the budget applies."""
    width = 1000
    for height, pool in ((FIRST_BOUND // width, PUBLIC), (FIRST_BOUND // width + 1, MEDIUM)):
        bookmark = server.log_sizes()
        body = kserve_body(protocol, encode(noise_image(width, height), "PNG"))
        answer = requests.post(kserve_url(server, protocol, MODEL), json=body, timeout=300)
        assert answer.status_code == 200, answer.text[:300]
        assert pool_hits(server, bookmark) == Counter({(pool, 200): 1}), (height, protocol)
    hidden = requests.post(kserve_url(server, protocol, MEDIUM), json=kserve_body(protocol, b"x"), timeout=60)
    assert hidden.status_code == 404 and hidden.json()["code"] == 404
    client = {"X-Forwarded-For": f"203.0.113.{50 if protocol == 'v1' else 51}"}
    declared = kserve_body(protocol, png_header_only(6000, 6000))
    first = requests.post(kserve_url(server, protocol, MODEL), json=declared, headers=client, timeout=300)
    bookmark = server.log_sizes()
    refused = requests.post(kserve_url(server, protocol, MODEL), json=declared, headers=client, timeout=300)
    assert first.status_code == 400 and refused.status_code == 429, (first.text, refused.text)
    assert "image budget" in refused.json()["message"] and pool_hits(server, bookmark) == Counter()
