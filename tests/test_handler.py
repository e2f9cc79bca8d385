"""The TorchServe handler without a server: TorchServe's own ``Context`` and metrics cache, fed
batches shaped exactly as ``ts.service.Service.retrieve_data_for_inference`` shapes them, and a
small randomly initialised network traced to its fp32 and bf16 TorchScript graphs."""
from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from ts.context import Context, RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl
from ts.utils.util import list_classes_from_module

import handler as handler_module
from handler import DenoiserHandler, archive_programs, lower_priority_if_hidden, upload_bytes
from models.compiled import PROGRAM_FILES
from models.ensemble import GeometricEnsemble, ensembled
from models.graphs import GRAPH_FILES, trace_graphs, write_identity
from models.imaging import MAX_PIXELS, decode_image
from models.pipeline import denoise_bytes
from models.registry import MODELS
from models.settings import (
    COMPILED_ENV,
    ENSEMBLES,
    HIDDEN_POOL_NICE_ENV,
    PRECISION_ENV,
    SERVING_CONFIG,
    THREADS_ENV,
    HandlerSettings,
    serving_config,
)
from models.tiling import TileConfig, count_tiles
from scripts.serving.archives import model_config_yaml
from tests.networks import random_network

YAML_CONFIG = {"handler": {"threads": 1, "tile": 32, "overlap": 8, "tile_batch": 4, "max_pixels": 5000}}
RNG = np.random.default_rng(1)

Request = tuple[dict[str, Any], dict[str, str]]


def metrics_cache() -> MetricsCacheYamlImpl:
    """TorchServe's metrics cache built from its bundled metrics.yaml."""
    import ts

    cache = MetricsCacheYamlImpl(str(Path(ts.__file__).parent / "configs" / "metrics.yaml"))
    cache.initialize_cache()
    return cache


def make_context(model_dir: Path, yaml_config: dict[str, Any] | None) -> Context:
    """A worker's context as TorchServe builds it (model dir, manifest, YAML config, metrics)."""
    manifest = {"model": {"modelName": "model_test", "serializedFile": "model.pt", "handler": "handler.py"}}
    return Context("model_test", str(model_dir), manifest, 4, None, "0.12.0",
                   metrics=metrics_cache(), model_yaml_config=yaml_config)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """(handler, context, graphs) for a tiny U-Net's graphs as an archive holds them; restores torch's thread count."""
    threads = torch.get_num_threads()
    model_dir = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    graphs = trace_graphs(random_network("model_unet", width=4, depth=2))
    for precision, name in GRAPH_FILES.items():
        graphs[precision].save(str(model_dir / name))
    write_identity(model_dir, "model_test:random-width-4")
    context = make_context(model_dir, YAML_CONFIG)
    handler = DenoiserHandler()
    handler.initialize(context)
    yield handler, context, graphs
    torch.set_num_threads(threads)


def image_file(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """``array`` encoded as an image file."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def raw(body: Any, content_type: str = "") -> Request:
    """A raw-body request as TorchServe hands it over: one parameter named ``body``."""
    return {"body": body}, {"body": content_type}


def form(*fields: tuple[str, Any, str]) -> Request:
    """A multipart form: (name, value, part content type; '' for a text field)."""
    return {name: value for name, value, _ in fields}, {name: kind for name, _, kind in fields}


def run_batch(served, requests: list[Request]) -> list[tuple[int, str | None, bytes]]:
    """Send one batch through ``handle``; (status, content type, body) per request."""
    handler, context, _ = served
    processors = []
    for _, part_types in requests:
        headers = {name: {"content-type": kind} for name, kind in part_types.items()}
        headers.update({"Accept": "*/*", "url_path": ""})
        processors.append(RequestProcessor(headers))
    context.request_processor = processors
    context.request_ids = {idx: f"req-{idx}" for idx in range(len(requests))}
    context.metrics.request_ids = context.request_ids
    bodies = handler.handle([data for data, _ in requests], context)
    assert len(bodies) == len(requests)
    return [(*context.get_response_status(idx)[:1], context.get_response_content_type(idx), body)
            for idx, body in enumerate(bodies)]


def expected_png(served, data: bytes) -> bytes:
    """What the handler must answer for ``data``: the chosen precision's graph through the pipeline, YAML settings."""
    handler, _, graphs = served
    return denoise_bytes(graphs[handler.choice.precision], data, TileConfig(32, 8, 4), max_pixels=5000).png


def assert_error(result: tuple[int, str | None, bytes], status: int, words: str) -> None:
    """``result`` is a JSON error with ``status`` whose message mentions ``words``."""
    code, content_type, body = result
    payload = json.loads(body)
    assert (code, content_type, payload["code"]) == (status, "application/json", status)
    assert payload["type"] and words in payload["message"]


RGB = RNG.integers(0, 256, (37, 45, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, (20, 30), dtype=np.uint8)


def test_initialize_reads_the_yaml_settings_and_loads_torchscript(served) -> None:
    handler, _, _ = served
    assert handler.initialized and handler.device == torch.device("cpu")
    # compiled: the test session's DENOISER_COMPILED (tests/conftest.py), over the YAML's default.
    assert handler.settings == HandlerSettings(threads=1, tile=32, overlap=8, tile_batch=4, max_pixels=5000, compiled="off")
    assert handler.choice.precision in {"fp32", "bf16"} and handler.choice.reason
    assert handler.tiles == TileConfig(32, 8, 4)
    assert torch.get_num_threads() == 1
    assert isinstance(handler.model, torch.jit.ScriptModule)


def test_settings_default_to_the_tiling_and_imaging_defaults(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    monkeypatch.delenv(COMPILED_ENV, raising=False)
    settings = HandlerSettings.from_context(make_context(tmp_path, None))
    assert settings.tiles == TileConfig() and settings.max_pixels == MAX_PIXELS
    assert settings == HandlerSettings() and settings.precision == "auto"
    assert settings.compiled == "auto"
    monkeypatch.setenv(THREADS_ENV, "3")
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    monkeypatch.setenv(COMPILED_ENV, "off")
    overridden = HandlerSettings.from_context(make_context(tmp_path, YAML_CONFIG))
    assert (overridden.threads, overridden.precision, overridden.compiled) == (3, "fp32", "off")
    monkeypatch.setenv(PRECISION_ENV, "int8")
    assert HandlerSettings.from_context(make_context(tmp_path, YAML_CONFIG)).precision == "int8"


def test_the_archive_programs_are_found_by_precision_and_a_missing_one_is_none(tmp_path: Path) -> None:
    (tmp_path / PROGRAM_FILES["fp32"]).write_bytes(b"program")
    program = archive_programs(str(tmp_path))
    assert program("fp32") == tmp_path / PROGRAM_FILES["fp32"]
    assert program("bf16") is None and program("int8") is None


def test_unknown_or_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown key.*overlapp"):
        HandlerSettings.from_section({"overlapp": 8}, environ={})
    with pytest.raises(ValueError, match="precision must be one of"):
        HandlerSettings.from_section({"precision": "fp16"}, environ={})
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, int8"):
        HandlerSettings.from_section({"precision": "int4"}, environ={})
    with pytest.raises(ValueError, match="overlap"):
        HandlerSettings.from_section({"tile": 32, "overlap": 16}, environ={})
    with pytest.raises(ValueError, match="compiled must be one of auto, off"):
        HandlerSettings.from_section({}, environ={COMPILED_ENV: "yes"})


def test_the_archive_config_reads_back_as_the_settings_defaults(monkeypatch, tmp_path: Path) -> None:
    """model-config.yaml as each archive holds it, read the way a worker reads it, gives the defaults and its ensemble."""
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    monkeypatch.delenv(COMPILED_ENV, raising=False)
    for name in MODELS:
        packed = yaml.safe_load(model_config_yaml(name))
        served = HandlerSettings.from_context(make_context(tmp_path, packed))
        assert served == HandlerSettings(ensemble=ENSEMBLES[name])


def test_every_served_model_has_a_self_ensemble_and_a_bad_one_is_refused() -> None:
    assert set(ENSEMBLES) == set(MODELS)
    assert all(serving_config(name)["handler"]["ensemble"] == size for name, size in ENSEMBLES.items())
    assert HandlerSettings.from_section({"ensemble": "4"}, environ={}).ensemble == 4
    with pytest.raises(ValueError, match="handler.ensemble must be one of 1, 2, 4, 8, not 3"):
        HandlerSettings.from_section({"ensemble": 3}, environ={})


def test_a_worker_with_an_ensemble_answers_its_average(served) -> None:
    """handler.ensemble: 4 in the YAML: the answer is the pipeline's with the graph's four-transform ensemble."""
    handler, context, graphs = served
    config = {"handler": {**YAML_CONFIG["handler"], "ensemble": 4}}
    worker = DenoiserHandler()
    worker.initialize(make_context(Path(context.system_properties["model_dir"]), config))
    assert worker.settings.ensemble == 4 and isinstance(worker.model, GeometricEnsemble)
    rgb = image_file(RGB)
    graph = graphs[worker.choice.precision]
    expected = denoise_bytes(ensembled(graph, 4), rgb, TileConfig(32, 8, 4), max_pixels=5000).png
    assert expected != denoise_bytes(graph, rgb, TileConfig(32, 8, 4), max_pixels=5000).png
    assert run_batch((worker, context, graphs), [raw(rgb, "image/png")]) == [(200, "image/png", expected)]


def test_forced_fp32_serves_the_fp32_graph(served, monkeypatch) -> None:
    handler, context, graphs = served
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    forced = DenoiserHandler()
    forced.initialize(context)
    assert forced.choice.precision == "fp32" and forced.model is not handler.model
    rgb = image_file(RGB)
    expected = denoise_bytes(graphs["fp32"], rgb, TileConfig(32, 8, 4), max_pixels=5000).png
    assert run_batch((forced, context, graphs), [raw(rgb, "image/png")]) == [(200, "image/png", expected)]


def test_a_batch_with_bad_requests_answers_every_request_on_its_own(served) -> None:
    rgb, gray = image_file(RGB), image_file(GRAY, "JPEG")
    results = run_batch(served, [
        raw(rgb, "image/png"),
        raw(b""),
        raw(b"definitely not an image"),
        raw(image_file(np.zeros((80, 80, 3), np.uint8))),
        form(("file", gray, "image/jpeg")),
        form(("name", b"holiday", ""), ("comment", b"no file here", "")),
        raw({"image": "base64..."}, "application/json"),
        raw(rgb[: len(rgb) // 2]),
    ])
    assert results[0] == (200, "image/png", expected_png(served, rgb))
    assert_error(results[1], 400, "empty")
    assert_error(results[2], 415, "not an image")
    assert_error(results[3], 413, "80x80 = 0.0064 MP; the limit is 0.005 MP")
    assert results[4] == (200, "image/png", expected_png(served, gray))
    assert Image.open(io.BytesIO(results[4][2])).mode == "L"
    assert_error(results[5], 400, "comment, name")
    assert_error(results[6], 415, "JSON")
    assert_error(results[7], 400, "truncated")


def test_good_answers_do_not_depend_on_their_batch(served) -> None:
    rgb = image_file(RGB)
    alone = run_batch(served, [raw(rgb)])
    mixed = run_batch(served, [raw(b"junk"), raw(rgb), raw(b"")])
    assert alone[0] == mixed[1] == (200, "image/png", expected_png(served, rgb))


@pytest.mark.parametrize("fields", [
    [("data", "PNG", "application/octet-stream")],
    [("image", "PNG", "image/png")],
    [("file", "PNG", "")],
    [("caption", b"text first", ""), ("upload", "PNG", "application/octet-stream")],
], ids=["data", "image", "file-without-type", "any-file-field"])
def test_multipart_uploads_are_found(served, fields) -> None:
    rgb = image_file(RGB)
    request = form(*[(name, rgb if value == "PNG" else value, kind) for name, value, kind in fields])
    assert run_batch(served, [request]) == [(200, "image/png", expected_png(served, rgb))]


def test_output_keeps_size_mode_and_alpha(served) -> None:
    alpha = RNG.integers(0, 256, (37, 45), dtype=np.uint8)
    (status, _, body), = run_batch(served, [raw(image_file(np.dstack([RGB, alpha])))])
    output = Image.open(io.BytesIO(body))
    assert status == 200 and output.format == "PNG" and output.mode == "RGBA" and output.size == (45, 37)
    np.testing.assert_array_equal(np.asarray(output)[..., 3], alpha)


def test_custom_metrics_are_emitted_per_good_request(served, caplog) -> None:
    caplog.set_level(logging.INFO)
    run_batch(served, [raw(image_file(RGB)), raw(b"junk"), raw(image_file(GRAY))])
    lines = [record.getMessage() for record in caplog.records if "[METRICS]" in record.getMessage()]

    def values(name: str) -> dict[str, float]:
        found = (re.match(rf"\[METRICS\]{name}\.\w+:([\d.]+)\|.*,(req-\d+)$", line) for line in lines)
        return {match.group(2): float(match.group(1)) for match in found if match}

    assert values("InputMegapixels") == {"req-0": round(37 * 45 / 1e6, 3), "req-2": round(20 * 30 / 1e6, 3)}
    config = TileConfig(32, 8, 4)
    assert values("TilesProcessed") == {"req-0": count_tiles(37, 45, config), "req-2": count_tiles(20, 30, config)}
    assert set(values("DenoiseTime")) == {"req-0", "req-2"} and min(values("DenoiseTime").values()) > 0


def test_a_failure_inside_the_handler_is_a_500_for_that_request_only(served, monkeypatch) -> None:
    def fail_on_gray(net, data, *args, **kwargs):
        if decode_image(data).gray:
            raise RuntimeError("simulated failure")
        return denoise_bytes(net, data, *args, **kwargs)

    monkeypatch.setattr(handler_module, "denoise_bytes", fail_on_gray)
    results = run_batch(served, [raw(image_file(GRAY)), raw(image_file(RGB))])
    assert_error(results[0], 500, "failed")
    assert results[1][:2] == (200, "image/png")


def test_running_out_of_memory_is_a_507_for_that_request_only(served, monkeypatch) -> None:
    def exhaust_on_gray(net, data, *args, **kwargs):
        if decode_image(data).gray:
            raise MemoryError
        return denoise_bytes(net, data, *args, **kwargs)

    monkeypatch.setattr(handler_module, "denoise_bytes", exhaust_on_gray)
    results = run_batch(served, [raw(image_file(RGB)), raw(image_file(GRAY))])
    assert results[0][:2] == (200, "image/png")
    assert_error(results[1], 507, "memory")


def test_upload_bytes_accepts_bytearray_and_text_decoded_bodies() -> None:
    assert upload_bytes({"body": bytearray(b"abc")}, {}) == b"abc"
    assert upload_bytes({"body": "abc"}, {}) == b"abc"
    assert upload_bytes({"x": b"text", "y": b"file"}, {"x": "", "y": "image/png"}) == b"file"


def test_only_a_hidden_pool_lowers_its_priority(tmp_path: Path) -> None:
    """Registered under its manifest's name a worker keeps its priority; under another (a hidden pool) every
    thread drops by the setting, threads started afterwards too. Run in a child: a process cannot raise it back."""
    before = os.nice(0)
    assert lower_priority_if_hidden(make_context(tmp_path, None), 10) is False and os.nice(0) == before
    script = (
        "import os, threading, types\n"
        "from handler import lower_priority_if_hidden\n"
        "before = os.nice(0)\n"
        "early = threading.Thread(target=threading.Event().wait, args=(30,), daemon=True); early.start()\n"
        "context = types.SimpleNamespace(model_name='model_unet-large', manifest={'model': {'modelName': 'model_unet'}})\n"
        "assert lower_priority_if_hidden(context, 4)\n"
        "later = []\n"
        "worker = threading.Thread(target=lambda: later.append(os.nice(0))); worker.start(); worker.join()\n"
        "early_nice = os.getpriority(os.PRIO_PROCESS, early.native_id)\n"
        "print(os.nice(0) - before, early_nice - before, later[0] - before)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=Path(handler_module.__file__).parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "4", "4"]


def test_the_hidden_pool_nice_follows_its_environment_variable() -> None:
    assert HandlerSettings.from_section({}, environ={HIDDEN_POOL_NICE_ENV: "3"}).hidden_pool_nice == 3
    assert HandlerSettings.from_section({}, environ={}).hidden_pool_nice == SERVING_CONFIG["handler"]["hidden_pool_nice"]


def test_handler_module_defines_exactly_one_class() -> None:
    """TorchServe's loader refuses a handler module that defines more than one class."""
    assert list_classes_from_module(handler_module) == [DenoiserHandler]


def b64(data: bytes) -> str:
    """``data`` in base64, as KServe clients send images."""
    return base64.b64encode(data).decode()


def json_answer(result: tuple[int, str | None, bytes]) -> dict[str, Any]:
    """A 200 JSON answer's payload."""
    status, content_type, body = result
    assert (status, content_type) == (200, "application/json"), body[:300]
    return json.loads(body)


def test_kserve_v1_and_v2_bodies_get_base64_pngs_equal_to_the_raw_answer(served) -> None:
    rgb, gray = image_file(RGB), image_file(GRAY, "JPEG")
    v1, v2 = run_batch(served, [
        raw({"instances": [{"data": b64(rgb)}, {"b64": b64(gray)}]}, "application/json"),
        raw({"id": "mine", "inputs": [{"name": "photo", "datatype": "BYTES", "shape": [1], "data": [b64(rgb)]}]},
            "application/json"),
    ])
    assert json_answer(v1) == {"predictions": [{"b64": b64(expected_png(served, rgb))}, {"b64": b64(expected_png(served, gray))}]}
    assert json_answer(v2) == {"id": "mine", "model_name": "model_test", "model_version": None, "outputs": [
        {"name": "photo", "datatype": "BYTES", "shape": [1], "data": [b64(expected_png(served, rgb))]}]}


def test_kserve_mistakes_get_the_same_json_errors(served) -> None:
    small = image_file(RNG.integers(0, 256, (50, 60, 3), dtype=np.uint8))  # 3,000 of the 5,000 pixels allowed
    results = run_batch(served, [
        raw({"instances": [{"data": "%%%"}]}, "application/json"),
        raw({"instances": [{"data": b64(small)}, {"data": b64(small)}]}, "application/json"),
        raw({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}, "application/json"),
        raw(b'{"instances": [{"data": ', "application/json"),
        raw({"instances": [{"data": b64(b"not an image")}]}, "application/json"),
    ])
    assert_error(results[0], 400, "instances[0].data is not valid base64")
    assert_error(results[1], 413, "instances[1].data: image is 60x50")
    assert_error(results[2], 415, "BYTES")
    assert_error(results[3], 400, "not valid JSON")
    assert_error(results[4], 415, "instances[0].data: the body is not an image")


def enveloped(served, envelope_class: type, body: dict[str, Any]) -> list[Any]:
    """One JSON request through TorchServe's own envelope wrapped around the handler, as a worker runs it."""
    handler, context, _ = served
    context.request_processor = [RequestProcessor({"body": {"content-type": "application/json"}, "url_path": ""})]
    context.request_ids = {0: "req-0"}
    context.metrics.request_ids = context.request_ids
    return envelope_class(handler.handle).handle([{"body": body}], context)


def test_under_the_kserve_envelopes_the_answers_are_the_same(served) -> None:
    from ts.torch_handler.request_envelope.kserve import KServeEnvelope
    from ts.torch_handler.request_envelope.kservev2 import KServev2Envelope

    rgb, gray = image_file(RGB), image_file(GRAY)
    v1 = enveloped(served, KServeEnvelope, {"instances": [{"data": b64(rgb)}, {"b64": b64(gray)}]})
    assert v1 == [{"predictions": [{"b64": b64(expected_png(served, rgb))}, {"b64": b64(expected_png(served, gray))}]}]
    inputs = [{"name": name, "datatype": "BYTES", "shape": [1], "data": [b64(data)]} for name, data in (("a", rgb), ("b", gray))]
    (v2,) = enveloped(served, KServev2Envelope, {"id": "mine", "inputs": inputs})
    assert json.loads(json.dumps(v2)) == {"id": "mine", "model_name": "model_test", "model_version": None, "outputs": [
        {"name": name, "datatype": "BYTES", "shape": [1], "data": [b64(expected_png(served, data))]}
        for name, data in (("a", rgb), ("b", gray))]}


@pytest.mark.parametrize(("envelope", "body", "status", "words"), [
    ("kserve", {"instances": [{"data": "%%%"}]}, 400, "not valid base64"),
    ("kserve", {"instances": []}, 400, "no images"),
    ("kserve", {"inputs": []}, 400, "no images"),
    ("kservev2", {"inputs": [{"name": "a", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]}]}, 400, "one image per tensor"),
])
def test_under_an_envelope_a_refusal_is_torchserves_error_with_the_status(served, envelope, body, status, words) -> None:
    from ts.torch_handler.request_envelope.kserve import KServeEnvelope
    from ts.torch_handler.request_envelope.kservev2 import KServev2Envelope
    from ts.utils.util import PredictionException

    with pytest.raises(PredictionException) as raised:
        enveloped(served, {"kserve": KServeEnvelope, "kservev2": KServev2Envelope}[envelope], body)
    assert raised.value.error_code == status and words in raised.value.message
