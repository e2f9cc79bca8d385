"""The load-test script (``scripts.loadtest``) and the server's behaviour under load and overload."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from models import MODELS
from scripts.loadtest import LoadResult, make_bodies, run_load, worker_pids
from scripts.server import models_value, running_server

MODEL = "model_unet"


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
