"""Hostile and malformed requests against the real service (the session ``server``: nginx in front of
TorchServe and the handler), as clients send them.

Each case gets a correct PNG or a 4xx with a JSON message (413 for oversized bodies and
images), never a 5xx or a reset connection: wrong or missing content types, a body over the
limit (with a length, or chunked), a client that sends slowly. After each request the server is
healthy, its workers are the ones it had before, and no restart was logged in between.
"""
from __future__ import annotations

import io
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from PIL import Image

from models import MODELS
from scripts.paths import CONFIG
from scripts.serving.front import read_properties
from tests.hostile_inputs import OK, REJECT, HostileCase, encode, hostile_cases, noise_image

DEFAULT_MAX_REQUEST_SIZE = 6_553_500


MAX_REQUEST_SIZE = int(read_properties(CONFIG).get("max_request_size", DEFAULT_MAX_REQUEST_SIZE))
CASES = hostile_cases(MAX_REQUEST_SIZE)
MODEL_NAMES = sorted(MODELS)
SLOW_CHUNK_BYTES, SLOW_PAUSE_S = 512, 0.25


def worker_pids(server: Any) -> dict[str, set[int]]:
    """Every model's worker process ids."""
    return {model: set(server.worker_pids(model)) for model in MODEL_NAMES}


@contextmanager
def unharmed(server: Any) -> Iterator[None]:
    """The block leaves the server healthy, with the same workers and no worker death or restart in its logs."""
    assert requests.get(f"{server.inference_url}/ping", timeout=30).status_code == 200
    pids, log = worker_pids(server), server.log_sizes()
    yield
    ping = requests.get(f"{server.inference_url}/ping", timeout=30)
    assert ping.status_code == 200 and ping.json().get("status") == "Healthy"
    assert worker_pids(server) == pids
    assert server.restarts_since(log) == []


def check_error(response: requests.Response) -> None:
    """A JSON error body whose message a user can act on."""
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.text[:200]
    message = response.json().get("message", "")
    assert len(message) > 10, response.text


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_request(server: Any, case: HostileCase) -> None:
    url = case.url(server.inference_url, MODEL_NAMES[CASES.index(case) % len(MODEL_NAMES)])
    with unharmed(server):
        response = requests.request(case.method, url, timeout=300, **case.request_kwargs())
    assert response.status_code < 500, f"{case.name}: {response.status_code} {response.text[:300]}"
    if case.expect == OK:
        assert response.status_code == 200, f"{case.name}: {response.status_code} {response.text[:300]}"
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.format == "PNG"
            assert image.size == case.size
        return
    if case.expect == REJECT:
        assert 400 <= response.status_code < 500, response.status_code
    else:
        assert response.status_code == case.expect, f"{case.name}: {response.status_code} {response.text[:300]}"
    check_error(response)


def chunks(body: bytes, size: int, pause_s: float = 0.0) -> Iterator[bytes]:
    """``body`` in pieces of ``size`` bytes, with a pause before each (requests sends them chunked)."""
    for start in range(0, len(body), size):
        time.sleep(pause_s)
        yield body[start:start + size]


def test_chunked_body_over_the_limit_gets_a_json_413(server: Any) -> None:
    """Without a Content-Length the limit is found while streaming: still a 413 the client reads."""
    body = random.Random(4).randbytes(MAX_REQUEST_SIZE + 2**20)
    with unharmed(server):
        response = requests.post(f"{server.inference_url}/predictions/{MODEL_NAMES[0]}", data=chunks(body, 2**20), timeout=300)
    assert response.status_code == 413
    check_error(response)


def test_a_slow_client_gets_its_png(server: Any) -> None:
    """An upload trickling in over several seconds is streamed through and denoised."""
    png = encode(noise_image(40, 32), "PNG")
    started = time.monotonic()
    with unharmed(server):
        response = requests.post(f"{server.inference_url}/predictions/{MODEL_NAMES[1]}",
                                 data=chunks(png, SLOW_CHUNK_BYTES, SLOW_PAUSE_S), timeout=300)
    assert time.monotonic() - started >= SLOW_PAUSE_S * (len(png) // SLOW_CHUNK_BYTES)
    assert response.status_code == 200, response.text[:300]
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.size == (40, 32)

