"""The serving path end to end: real TorchServe, real archives of the trained weights, real HTTP.

Sizes from 1x1 to 4 megapixels, every supported input kind, raw bodies and multipart forms,
JSON errors, concurrent requests, ``api-test.py`` against the server, and the served quality
matching the evaluation's (``scripts/evaluation/served.py``) on scikit-image's photographs.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import requests
import torch
from PIL import Image

from models import MODELS, WEIGHTS_DIR
from models.choice_cache import CACHE_ENV
from models.compiled import cxx_compiler
from models.degradations import degrade
from models.precision import PrecisionChoice, native_int8
from models.quantized import kept_program
from models.registry import graphs_id
from models.settings import COMPILED_ENV, SERVING_CONFIG
from scripts.evaluation.served import denoise_image, score, served_network
from scripts.paths import REPO
from scripts.serving.front import hidden_pool_suffixes
from scripts.serving.harness import free_port, running_server
from scripts.serving.processes import models_value, registrations
from scripts.training.dataset import list_images, load_rgb
from tests.photos import TRAIN_PHOTOS, photo_folder, synthetic_photo

MODEL_NAMES = sorted(MODELS)
TIMEOUT = 600


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    """An image as file bytes in ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def post(server: Any, model: str, **kwargs: Any) -> requests.Response:
    """POST to ``/predictions/<model>`` of the session server."""
    return requests.post(f"{server.inference_url}/predictions/{model}", timeout=TIMEOUT, **kwargs)


def answered_image(response: requests.Response) -> Image.Image:
    """The PNG of a successful answer (asserting status and content type)."""
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"].startswith("image/png")
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    return image


def test_every_endpoint_is_registered_with_its_hidden_pools(model_store: Path) -> None:
    """Each public model, from "all" or a --models value, comes with one registration of its archive per hidden pool."""
    pools = ["", *hidden_pool_suffixes()]
    expected = {f"{name}{suffix}": f"{MODELS[name].archive}.mar" for name in MODEL_NAMES for suffix in pools}
    assert registrations(model_store, "all") == expected
    assert registrations(model_store, models_value(["model_unet"])) == {f"model_unet{suffix}": "UNET.mar" for suffix in pools}


@pytest.mark.server
def test_hidden_pool_workers_run_at_their_configured_priority(server: Any) -> None:
    """Every thread of each endpoint's hidden pool workers runs ``hidden_pool_nice`` below its public worker."""
    def thread_nices(pid: int) -> set[int]:
        return {psutil.Process(thread.id).nice() for thread in psutil.Process(pid).threads()}

    lowered = SERVING_CONFIG["handler"]["hidden_pool_nice"]
    for model in MODEL_NAMES:
        (public,) = server.worker_pids(model)
        (normal,) = thread_nices(public)
        for suffix in hidden_pool_suffixes():
            (hidden,) = server.worker_pids(f"{model}{suffix}")
            assert thread_nices(hidden) == {min(19, normal + lowered)}, (model, suffix)


def test_every_model_is_served_healthy(server: Any, model_store: Path) -> None:
    """Every model is registered, with its hidden pools and nothing else."""
    assert requests.get(f"{server.inference_url}/ping", timeout=30).json()["status"] == "Healthy"
    listed = requests.get(f"{server.management_url}/models", timeout=30).json()["models"]
    assert sorted(entry["modelName"] for entry in listed) == sorted(registrations(model_store, "all"))
    assert set(MODEL_NAMES) <= set(registrations(model_store, "all"))


@pytest.mark.parametrize("model", MODEL_NAMES)
@pytest.mark.parametrize("size", [(1, 1), (17, 9), (129, 130), (300, 201)])
def test_any_size_comes_back_at_its_size(server: Any, model: str, size: tuple[int, int]) -> None:
    result = answered_image(post(server, model, data=encode(Image.fromarray(synthetic_photo(*size)))))
    assert (result.size, result.mode) == (size, "RGB")


def test_a_four_megapixel_photo(server: Any) -> None:
    size = (2304, 1728)
    result = answered_image(post(server, "model_unet", data=encode(Image.fromarray(synthetic_photo(*size)), "JPEG")))
    assert (result.size, result.mode) == (size, "RGB")


@pytest.mark.parametrize(
    ("make", "fmt", "mode"),
    [
        (lambda a: Image.fromarray(a), "JPEG", "RGB"),
        (lambda a: Image.fromarray(a), "WEBP", "RGB"),
        (lambda a: Image.fromarray(a), "BMP", "RGB"),
        (lambda a: Image.fromarray(a), "TIFF", "RGB"),
        (lambda a: Image.fromarray(a).convert("L"), "PNG", "L"),
        (lambda a: Image.fromarray(a).convert("P"), "PNG", "RGB"),
        (lambda a: Image.fromarray(a).convert("CMYK"), "JPEG", "RGB"),
    ],
    ids=["jpeg", "webp", "bmp", "tiff", "gray", "palette", "cmyk"],
)
def test_input_kinds(server: Any, make, fmt: str, mode: str) -> None:
    result = answered_image(post(server, "model_runet", data=encode(make(synthetic_photo(70, 50)), fmt)))
    assert (result.size, result.mode) == ((70, 50), mode)


def test_alpha_passes_through_untouched(server: Any) -> None:
    rgb = synthetic_photo(64, 40)
    alpha = np.tile(np.arange(64, dtype=np.uint8) * 4, (40, 1))
    rgba = Image.fromarray(np.dstack([rgb, alpha]))
    result = answered_image(post(server, "model_arunet", data=encode(rgba)))
    assert result.mode == "RGBA"
    assert np.array_equal(np.asarray(result)[..., 3], alpha)


def test_sixteen_bit_gray_comes_back_sixteen_bit(server: Any) -> None:
    values = (synthetic_photo(48, 32)[..., 0].astype(np.uint16) * 257)
    result = answered_image(post(server, "model_unet", data=encode(Image.fromarray(values))))
    assert result.mode.startswith("I")
    assert result.size == (48, 32)
    assert np.asarray(result).max() > 255


def test_multipart_upload(server: Any) -> None:
    body = encode(Image.fromarray(synthetic_photo(40, 30)))
    result = answered_image(post(server, "model_unet", files={"file": ("photo.png", body, "image/png")}))
    assert result.size == (40, 30)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [(b"", 400, "empty"), (b"plain text, not a picture", 415, "not an image")],
    ids=["empty", "text"],
)
def test_client_mistakes_get_json_4xx(server: Any, body: bytes, status: int, words: str) -> None:
    response = post(server, "model_unet", data=body)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    answer = response.json()
    assert answer["code"] == status and words in answer["message"]
    assert requests.get(f"{server.inference_url}/ping", timeout=30).status_code == 200


def test_eight_concurrent_requests_each_get_their_own_answer(server: Any) -> None:
    sizes = [(40 + 9 * i, 30 + 7 * i) for i in range(8)]
    jobs = [(MODEL_NAMES[i % 3], encode(Image.fromarray(synthetic_photo(*size, seed=i)))) for i, size in enumerate(sizes)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: post(server, job[0], data=job[1]), jobs))
    assert [answered_image(answer).size for answer in answers] == sizes


def test_api_test_script_passes_against_the_server(server: Any) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "api-test.py"), "--url", server.inference_url],
        cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
    )
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("ok  ") == len(MODEL_NAMES) + 2


@pytest.fixture(scope="module")
def quality_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three photographs (one of them grey) to compare the served and the evaluated quality on."""
    return list_images(photo_folder(tmp_path_factory.mktemp("quality"), TRAIN_PHOTOS))


def served_results(server: Any, model: str, images: list[Path]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(clean, noisy, served result) for each image under the evaluation's hybrid degradation."""
    results = []
    for index, path in enumerate(images):
        clean = load_rgb(path)
        noisy = degrade(clean, "hybrid", index)
        result = np.asarray(answered_image(post(server, model, data=encode(Image.fromarray(noisy)))).convert("RGB"))
        results.append((clean, noisy, result))
    return results


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_served_quality_matches_the_evaluation_script(server: Any, model: str, quality_images: list[Path]) -> None:
    """The served PNG equals the evaluation's (scripts/evaluation/served.py) pixel for pixel, at the precision this machine's decision picks."""
    net, precision = served_network(model)
    served, evaluated = [], []
    for clean, noisy, result in served_results(server, model, quality_images):
        expected = denoise_image(net, noisy)
        assert np.array_equal(result, expected), f"{model} at {precision.served}"
        served.append(score(clean, result)["psnr"])
        evaluated.append(score(clean, expected)["psnr"])
    print(json.dumps({"model": model, "precision": precision.served, "served": served, "evaluated": evaluated}))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_each_forced_precision_serves_what_the_evaluation_scores(
    model_store: Path, precision: str, quality_images: list[Path]
) -> None:
    """DENOISER_PRECISION forces the worker's graph; its answers equal the evaluation's at that precision."""
    net, chosen = served_network("model_runet", precision=precision)
    assert chosen.served == precision
    with running_server(model_store, models_value(["model_runet"]), env={"DENOISER_PRECISION": precision}) as one:
        for _, noisy, result in served_results(one, "model_runet", quality_images[:2]):
            assert np.array_equal(result, denoise_image(net, noisy))


def decisions(server: Any) -> dict[str, list[str]]:
    """Each model's logged precision decisions, one per worker of its pools ("<precision>: <reason>; ...")."""
    found: dict[str, list[str]] = {model: [] for model in MODEL_NAMES}
    for line in (server.log_dir / "model_log.log").read_text(errors="replace").splitlines():
        if "denoiser " in line and " serves " in line:
            model = line.split("denoiser ", 1)[1].split(" ", 1)[0]
            found[model].append(line.split(" serves ", 1)[1])
    return found


def test_the_precision_is_decided_once_per_machine_and_kept_across_restarts(
    model_store: Path, tmp_path: Path, quality_images: list[Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The workers of every pool start together: each model's graphs are timed by one of them (with a
    package compiled from the archive's program where a C++ compiler is present, and one from its int8
    program where it has one and the CPU has int8 instructions), the others take its
    stored decision, and a restart reads them all back without timing or compiling and answers as the
    evaluation scores."""
    env = {CACHE_ENV: str(tmp_path), COMPILED_ENV: "auto"}
    with running_server(model_store, env=env) as first:
        decided = decisions(first)
        workers = len(registrations(model_store, "all")) // len(MODEL_NAMES)
    entries = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("precision-*.json"))]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    compiled = [entry["key"]["graphs"].split(":")[0] for entry in entries if entry["choice"]["graph"] == "aoti"]
    with running_server(model_store, env=env) as second:
        reread = decisions(second)
        # A package's answers against the evaluation's, as test_served_quality_matches_the_evaluation_script
        # does for the session's TorchScript graphs (the first model where nothing was compiled).
        for model in compiled or MODEL_NAMES[:1]:
            net, served = served_network(model)
            for _, noisy, result in served_results(second, model, quality_images[:1]):
                assert np.array_equal(result, denoise_image(net, noisy)), f"{model} served as {served.served}"
    assert sorted(entry["key"]["graphs"].split(":")[0] for entry in entries) == MODEL_NAMES
    stored = {entry["key"]["graphs"].split(":")[0]: PrecisionChoice(**entry["choice"]).served for entry in entries}
    packages = {path.name.split("-")[1]: path for path in tmp_path.glob("precision-*-*.pt2")}
    assert len(packages) == sum(entry["choice"]["graph"] == "aoti" for entry in entries)
    for model in MODEL_NAMES:
        assert len(decided[model]) == len(reread[model]) == workers, (decided[model], reread[model])
        assert all(line.startswith(f"{stored[model]}: ") for line in decided[model] + reread[model])
        timed = [line for line in decided[model] if not line.split(": ", 1)[1].startswith("cached: ")]
        assert len(timed) == 1, decided[model]
        assert "median per batch" in timed[0] or "only native candidate" in timed[0]
        if cxx_compiler():
            assert "aoti-" in timed[0], timed[0]
            int8_candidate = native_int8(torch.device("cpu")) and kept_program(model, WEIGHTS_DIR, graphs_id(model))[0]
            assert ("aoti-int8" in timed[0]) == bool(int8_candidate), timed[0]
        assert all(line.split(": ", 1)[1].startswith("cached: ") for line in reread[model]), reread[model]


@contextmanager
def serve_script(model_store: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str, str]]:
    """``python -m scripts.serving.supervisor`` (what serve.sh and the image run) on free loopback ports, ready.

    Yields the process, the front's URL and TorchServe's; everything it starts has ``tmp_path``
    in its command line (TorchServe's temp folder, nginx's run folder), for ``leftovers``.
    """
    ports = {name: free_port() for name in ("inference", "management", "metrics", "front")}
    env = {
        **os.environ,
        **{f"TS_{name.upper()}_ADDRESS": f"http://127.0.0.1:{ports[name]}" for name in ("inference", "management", "metrics")},
        "TS_GRPC_INFERENCE_PORT": str(free_port()),
        "TS_GRPC_MANAGEMENT_PORT": str(free_port()),
        "DENOISER_LISTEN": f"127.0.0.1:{ports['front']}",
        "LOG_LOCATION": str(tmp_path), "METRICS_LOCATION": str(tmp_path), "TEMP": str(tmp_path), "TMPDIR": str(tmp_path),
    }
    command = [sys.executable, "-m", "scripts.serving.supervisor", "--model-store", str(model_store),
               "--models", models_value(["model_unet"])]
    serving = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    front, torchserve = (f"http://127.0.0.1:{ports[name]}" for name in ("front", "inference"))
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and serving.poll() is None:
            try:
                if requests.get(f"{front}/ping", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(1)
        assert requests.get(f"{front}/ping", timeout=5).json()["status"] == "Healthy"
        yield serving, front, torchserve
    finally:
        serving.kill()


def leftovers(tmp_path: Path) -> list[str]:
    """Processes whose command line names ``tmp_path``: what a stopped ``serve_script`` left running."""
    return subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()


def test_serve_script_stops_nginx_and_torchserve_cleanly_on_sigterm(model_store: Path, tmp_path: Path) -> None:
    """TorchServe answers behind nginx; SIGTERM stops both (exit 0) and leaves no frontend, worker or nginx behind."""
    with serve_script(model_store, tmp_path) as (serving, front, torchserve):
        names = {child.name() for child in psutil.Process(serving.pid).children(recursive=True)}
        assert {"java", "nginx"} <= names, names
        assert requests.get(f"{torchserve}/ping", timeout=5).json()["status"] == "Healthy"
        serving.send_signal(signal.SIGTERM)
        assert serving.wait(timeout=120) == 0
    assert leftovers(tmp_path) == []
    for url in (front, torchserve):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/ping", timeout=5)


@pytest.mark.parametrize("child", ["nginx", "java"])
def test_serve_script_ends_when_either_child_dies(model_store: Path, tmp_path: Path, child: str) -> None:
    """nginx's master or TorchServe's Java frontend killed: the other is stopped and the service exits 1 (a container restarts)."""
    with serve_script(model_store, tmp_path) as (serving, _, _):
        victim = next(p for p in psutil.Process(serving.pid).children(recursive=True)
                      if p.name() == child and p.parent().name() != child)
        victim.kill()
        assert serving.wait(timeout=120) == 1
    assert leftovers(tmp_path) == []


def test_workers_wait_passively_for_their_openmp_threads(server: Any) -> None:
    """Spinning OpenMP threads of three workers on two cores cut mixed throughput fourfold (scripts/serving/processes.py)."""
    for model in MODEL_NAMES:
        for pid in server.worker_pids(model):
            assert psutil.Process(pid).environ().get("OMP_WAIT_POLICY") == "PASSIVE"
