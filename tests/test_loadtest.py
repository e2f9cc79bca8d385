"""The load-test script (``scripts.evaluation.loadtest``) and the server's behaviour under load and overload,
through the nginx front: mixed load, small photos while a large one runs on the same endpoint, a
full job queue (503), one client over its rate (429)."""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from models import MODELS
from scripts.evaluation.loadtest import LoadResult, SizeClass, all_worker_pids, make_bodies, run_load, run_mixed, worker_pids
from scripts.serving.front import POOLS, RATE_BURST, RATE_PER_MINUTE
from scripts.serving.harness import running_server
from scripts.serving.processes import models_value
from tests.hostile_inputs import encode, noise_image

MODEL = "model_unet"
# The acceptance of docs/fairness.md: small photos' p95 while a large one runs, over their idle p95.
SMALL_P95_RATIO_LIMIT = 5.0


def test_summary_reports_percentiles_throughput_and_errors() -> None:
    result = LoadResult(latencies=[float(i) for i in range(1, 101)], wall_s=50.0)
    result.statuses.update({200: 98, 503: 1, "ConnectionError": 1})
    summary = result.summary()
    assert summary["requests"] == 100 and summary["errors"] == 2
    assert summary["throughput_rps"] == 2.0
    assert summary["p50_s"] == 50.5 and 95 <= summary["p95_s"] <= 96 and 99 <= summary["p99_s"] <= 100


def test_make_bodies_spans_the_requested_sizes() -> None:
    bodies = make_bodies(3, 0.01, 0.04)
    assert len(bodies) == 3 and len(bodies[0]) < len(bodies[-1])


def test_concurrent_mixed_load_has_no_errors_and_no_restarts(server: Any) -> None:
    models = sorted(MODELS)
    before = {m: worker_pids(server.management_url, m) for m in models}
    bookmark = server.log_sizes()
    result = run_load(server.inference_url, models, make_bodies(4, 0.02, 0.1), total=24, clients=4, progress=False)
    print("\n", result.summary())
    assert result.error_count == 0, result.errors
    assert {m: worker_pids(server.management_url, m) for m in models} == before
    assert server.restarts_since(bookmark) == []


@pytest.mark.server
@pytest.mark.slow
def test_small_photos_keep_their_latency_while_a_large_one_runs(server: Any) -> None:
    """The scaled-down fairness run: one size per pool (the full run: ``--mixed --large-mp 40``, docs/fairness.md)."""
    bounds = [bound for _, bound in POOLS]
    small = SizeClass("small", bounds[0] / 1e7, 2)
    medium = SizeClass("medium", (bounds[0] + bounds[1]) / 2e6, 1)
    large = SizeClass("large", bounds[1] / 1e6 + 0.5, 1)
    before = all_worker_pids(server.management_url)
    bookmark = server.log_sizes()
    report = run_mixed(server.inference_url, [MODEL], small, medium, large, idle_requests=6, large_requests=1)
    print("\n", report)
    assert report["errors"] == 0, report
    assert report["loaded"]["small"]["requests"] > report["loaded"]["large"]["requests"], report
    assert report["small_p95_ratio"] <= SMALL_P95_RATIO_LIMIT, report
    assert all_worker_pids(server.management_url) == before and server.restarts_since(bookmark) == []


def test_requests_beyond_the_job_queue_get_a_clean_503(model_store: Any) -> None:
    body = make_bodies(1, 0.25, 0.25)[0]
    with running_server(model_store, models=models_value([MODEL]), env={"TS_JOB_QUEUE_SIZE": "1"}) as server:
        url = f"{server.inference_url}/predictions/{MODEL}"
        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(lambda _: requests.post(url, data=body, timeout=600), range(12)))
        statuses = [response.status_code for response in responses]
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(503) >= 1 and statuses.count(200) >= 1, statuses
        for response in responses:
            if response.status_code == 503:
                assert response.json()["message"], response.text
        assert requests.post(url, data=body, timeout=600).status_code == 200


def test_one_client_over_its_rate_gets_json_429_and_nobody_else_does(server: Any) -> None:
    """One client behind the Space's proxy, however it writes X-Forwarded-For, gets 1 + burst PNGs, then 429s.

    The proxy appends the client's address; whatever the client wrote stands to its left, and
    internal hops (private addresses) to its right: every form below is the same client. A
    second client and loopback callers (the health check) are served meanwhile.
    """
    url = f"{server.inference_url}/predictions/{MODEL}"
    png = encode(noise_image(8, 8), "PNG")
    client = "203.0.113.7"
    forms = [client, f"198.51.100.1, {client}", f"{client}, 10.0.0.5", f"198.51.100.2, {client}, 172.16.0.9"]
    headers = [{"X-Forwarded-For": forms[i % len(forms)]} for i in range(RATE_BURST + 9)]
    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda h: requests.post(url, data=png, headers=h, timeout=300), headers))
    elapsed = time.monotonic() - started
    statuses = [answer.status_code for answer in answers]
    refills = math.floor(elapsed * RATE_PER_MINUTE / 60)
    print(f"\n{len(statuses)} requests in {elapsed:.2f} s: {statuses.count(200)} PNGs, {statuses.count(429)} x 429")
    assert set(statuses) <= {200, 429}, statuses
    assert 1 + RATE_BURST <= statuses.count(200) <= 1 + RATE_BURST + refills, statuses
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.headers["Content-Type"].startswith("application/json")
    assert refused.json()["code"] == 429 and f"at most {RATE_PER_MINUTE} a minute" in refused.json()["message"]
    assert refused.headers["Retry-After"] == str(math.ceil(60 / RATE_PER_MINUTE))
    for other in ({"X-Forwarded-For": "203.0.113.8"}, {}):
        assert requests.post(url, data=png, headers=other, timeout=300).status_code == 200, other


def test_loopback_callers_are_not_rate_limited(server: Any) -> None:
    """Twice the burst from 127.0.0.1 with no proxy header (the container's health check, the test suite) all pass."""
    url = f"{server.inference_url}/predictions/{MODEL}"
    png = encode(noise_image(8, 8), "PNG")
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: requests.post(url, data=png, timeout=300).status_code, range(2 * (RATE_BURST + 1))))
    assert statuses == [200] * len(statuses)
