"""Benchmark sections run on tiny inputs made from a scikit-image photograph and print their tables.

No timing assertions.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import MODELS, build_model, save_weights
from scripts.benchmark import TimedNetwork, handle_once, main, photo_png, tile_flops
from tests.photos import photo_folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Tiny networks, so the sections stay fast."""
    folder = tmp_path_factory.mktemp("weights")
    for name in MODELS:
        save_weights(name, build_model(name, width=8, depth=2), {"config": {"width": 8, "depth": 2}}, folder)
    return folder


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """The photograph the benchmark inputs are made from."""
    return photo_folder(tmp_path_factory.mktemp("photos"), ("coffee",)) / "coffee.png"


def test_tile_flops_counts_a_convolution() -> None:
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert tile_flops(conv, 8) == 2 * 3 * 4 * 9 * 8 * 8


def test_handler_steps_add_up_and_the_network_time_is_counted(image) -> None:
    body = photo_png(image, 0.01)
    net = TimedNetwork(lambda x: x)
    steps = handle_once(net, body)
    assert steps["total"] == pytest.approx(sum(v for k, v in steps.items() if k != "total"), rel=1e-6)
    assert steps["network"] >= 0 and net.seconds > 0


def test_quick_sections_print_their_tables(weights, image, tmp_path, capsys) -> None:
    results = main([
        "--quick", "--repeats", "1", "--section", "models", "torchscript", "serving", "--image", str(image),
        "--weights-dir", str(weights), "--json", str(tmp_path / "bench.json"),
    ])
    out = capsys.readouterr().out
    for section in ("models", "torchscript", "serving"):
        assert f"## {section}" in out and len(results[section]) == len(MODELS)
    assert all(row["max_abs_diff"] < 1e-5 for row in results["torchscript"])
    assert all(row["overhead_ratio"] > 0 and row["tiles"] >= 1 for row in results["serving"])
    assert (tmp_path / "bench.json").exists()


def test_http_section_against_the_session_server(server, image, capsys) -> None:
    results = main(["--quick", "--repeats", "1", "--section", "http", "--models", "model_unet", "--image", str(image),
                    "--url", server.inference_url])
    assert "## http" in capsys.readouterr().out
    assert [row["model"] for row in results["http"]] == ["model_unet", "model_unet"]
    assert all(row["megapixels_per_second"] > 0 for row in results["http"])
