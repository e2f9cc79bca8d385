"""The served graph: TorchScript or a package compiled here, decided once by timing and kept with the decision."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import torch

from models import compiled, precision
from models.graphs import serving_graph
from models.settings import HandlerSettings

SETTINGS = HandlerSettings(threads=1, tile=8, overlap=2, tile_batch=2)


def graph(seconds: float, offset: float = 0.0):
    """A stand-in graph that takes ``seconds`` and adds ``offset`` to its input."""

    def run(x: torch.Tensor) -> torch.Tensor:
        time.sleep(seconds)
        return x + offset

    return run


TORCHSCRIPT = {"fp32": graph(0.02), "bf16": graph(0.01, 0.005)}


class Builds:
    """Fake ``models.compiled`` package builds: each compile writes the file; loads give a graph of ``seconds``.

    The CPU has AVX512-BF16 and VNNI; with ``int8`` seconds given the archive has an int8 program,
    whose package takes that long (adding ``int8_offset``).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, seconds: float, offset: float = 0.01,
                 int8: float | None = None, int8_offset: float = 0.015) -> None:
        self.compiled: list[Path] = []
        self.loaded: list[Path] = []
        self.sources: list[str] = []
        self.seconds, self.offset, self.fail = seconds, offset, False
        self.int8, self.int8_offset = int8, int8_offset
        monkeypatch.setattr(compiled, "cxx_compiler", lambda: "/usr/bin/c++")
        monkeypatch.setattr(compiled, "compile_apart", self.compile)
        monkeypatch.setattr(compiled, "load_package", self.load)
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16", "avx512_vnni"}))

    def program(self, name: str) -> Path | None:
        return None if name == "int8" and self.int8 is None else Path(f"program-{name}.pt2")

    def compile(self, program: Path, path: Path, shape: tuple[int, ...]) -> Path:
        if self.fail:
            raise RuntimeError("the compiler crashed")
        assert shape == (2, 3, 8, 8)
        self.compiled.append(path)
        self.sources.append(program.name)
        path.write_text(program.name)
        return path

    def load(self, path: Path, shape: tuple[int, ...]):
        self.loaded.append(path)
        if path.read_text() == "program-int8.pt2":
            return graph(self.int8, self.int8_offset)
        return graph(self.seconds, self.offset)


def serve(builds: Builds, settings: HandlerSettings = SETTINGS):
    return serving_graph(TORCHSCRIPT, settings, "model_test:abc", program=builds.program)


def test_a_clearly_faster_package_is_compiled_once_and_served_after_restarts(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    builds = Builds(monkeypatch, seconds=0.002)
    served, choice = serve(builds)
    assert (choice.served, choice.graph) == ("aoti-bf16", "aoti")
    assert set(choice.seconds) == {"fp32", "bf16", "aoti-bf16"} and choice.seconds["aoti-bf16"] < choice.seconds["bf16"]
    assert choice.describe().startswith("aoti-bf16: aoti-bf16 is at least 10% faster than bf16")
    assert builds.sources == ["program-bf16.pt2"] and len(builds.compiled) == 1
    assert torch.allclose(served(torch.zeros(1)), torch.full((1,), 0.01))

    again, cached = serve(builds)
    assert cached.served == "aoti-bf16" and cached.reason.startswith("cached: ")
    assert len(builds.compiled) == 1 and builds.loaded == [builds.compiled[0]] * 2

    builds.compiled[0].unlink()
    _, rebuilt = serve(builds)
    assert rebuilt.served == "aoti-bf16" and len(builds.compiled) == 2


def test_a_package_not_clearly_faster_leaves_torchscript_served(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    builds = Builds(monkeypatch, seconds=0.01)
    served, choice = serve(builds)
    assert (choice.served, choice.graph) == ("bf16", "torchscript") and served is TORCHSCRIPT["bf16"]
    assert "aoti-bf16 is not 10% faster than bf16" in choice.reason and "aoti-bf16" in choice.seconds
    assert len(builds.compiled) == 1 and not builds.compiled[0].exists()


def test_a_package_too_far_from_fp32_is_not_served(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    builds = Builds(monkeypatch, seconds=0.0, offset=0.5)
    _, choice = serve(builds)
    assert choice.served == "bf16" and "aoti-bf16 differs by 0.5" in choice.reason


@pytest.mark.parametrize("why", ["no compiler", "off", "asked fp32", "no program"])
def test_nothing_is_compiled_without_a_compiler_when_off_asked_for_a_precision_or_without_a_program(
    monkeypatch, tmp_path, why: str,
) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    builds = Builds(monkeypatch, seconds=0.0)
    settings = SETTINGS
    if why == "no compiler":
        monkeypatch.setattr(compiled, "cxx_compiler", lambda: None)
    elif why == "off":
        settings = HandlerSettings(threads=1, tile=8, overlap=2, tile_batch=2, compiled="off")
    elif why == "asked fp32":
        settings = HandlerSettings(threads=1, tile=8, overlap=2, tile_batch=2, precision="fp32")
    program = None if why == "no program" else builds.program
    served, choice = serving_graph(TORCHSCRIPT, settings, "model_test:abc", program=program)
    assert choice.graph == "torchscript" and served is TORCHSCRIPT[choice.precision]
    assert builds.compiled == builds.loaded == builds.sources == []


def test_a_failed_compile_leaves_torchscript_served_and_says_why(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    builds = Builds(monkeypatch, seconds=0.0)
    builds.fail = True
    served, choice = serve(builds)
    assert served is TORCHSCRIPT["bf16"] and "compiling bf16 failed: the compiler crashed" in choice.reason


def test_a_stored_package_that_cannot_be_rebuilt_falls_back_to_torchscript(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    builds = Builds(monkeypatch, seconds=0.002)
    assert serve(builds)[1].served == "aoti-bf16"
    builds.compiled[0].unlink()
    builds.fail = True
    served, choice = serve(builds)
    assert served is TORCHSCRIPT["bf16"] and choice.graph == "torchscript"
    assert "the compiled package failed (the compiler crashed), so TorchScript" in choice.reason


def test_the_decision_is_kept_apart_per_compiler_and_setting(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    builds = Builds(monkeypatch, seconds=0.002)
    assert serve(builds)[1].served == "aoti-bf16"
    monkeypatch.setattr(compiled, "cxx_compiler", lambda: None)
    without = serve(builds)[1]
    off = serve(builds, HandlerSettings(threads=1, tile=8, overlap=2, tile_batch=2, compiled="off"))[1]
    assert (without.served, off.served) == ("bf16", "bf16")
    assert not without.reason.startswith("cached: ") and not off.reason.startswith("cached: ")
    assert len(list(tmp_path.glob("precision-*.json"))) == 3


def test_the_package_is_kept_beside_the_decision(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    builds = Builds(monkeypatch, seconds=0.002)
    serve(builds)
    entry = next(tmp_path.glob("precision-*.json"))
    assert builds.compiled == [entry.with_name(f"{entry.stem}-bf16.pt2")]


def test_a_clearly_faster_int8_package_is_served_and_only_its_package_kept(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    builds = Builds(monkeypatch, seconds=0.004, int8=0.001)
    served, choice = serve(builds)
    assert (choice.served, choice.precision, choice.graph) == ("aoti-int8", "int8", "aoti")
    assert set(choice.seconds) == {"fp32", "bf16", "aoti-bf16", "aoti-int8"}
    assert choice.reason.startswith("aoti-int8 is at least 10% faster than aoti-bf16")
    assert sorted(builds.sources) == ["program-bf16.pt2", "program-int8.pt2"]
    assert torch.allclose(served(torch.zeros(1)), torch.full((1,), 0.015))
    entry = next(tmp_path.glob("precision-*.json"))
    assert sorted(tmp_path.glob("*.pt2")) == [entry.with_name(f"{entry.stem}-int8.pt2")]

    again, cached = serve(builds)
    assert cached.served == "aoti-int8" and cached.reason.startswith("cached: ") and len(builds.compiled) == 2


def test_the_bf16_and_int8_packages_are_compiled_side_by_side(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    builds = Builds(monkeypatch, seconds=0.004, int8=0.001)
    both = threading.Barrier(2, timeout=10)
    compile_alone = builds.compile

    def compile_together(program: Path, path: Path, shape: tuple[int, ...]) -> Path:
        both.wait()  # broken (and the compile failed) unless the other compile has started meanwhile
        return compile_alone(program, path, shape)

    monkeypatch.setattr(compiled, "compile_apart", compile_together)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    _, choice = serve(builds)
    assert choice.served == "aoti-int8" and "failed" not in choice.reason
    assert sorted(builds.sources) == ["program-bf16.pt2", "program-int8.pt2"]


@pytest.mark.parametrize(("int8", "offset", "why"), [(0.004, 0.015, "aoti-int8 is not 10% faster than aoti-bf16"),
                                                     (0.0, 0.5, "aoti-int8 differs by 0.5")])
def test_an_int8_package_not_clearly_faster_or_too_far_from_fp32_is_not_served(
    monkeypatch, tmp_path, int8: float, offset: float, why: str,
) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    builds = Builds(monkeypatch, seconds=0.004, int8=int8, int8_offset=offset)
    _, choice = serve(builds)
    assert choice.served == "aoti-bf16" and why in choice.reason and "aoti-int8" in choice.max_abs_diff
    entry = next(tmp_path.glob("precision-*.json"))
    assert sorted(tmp_path.glob("*.pt2")) == [entry.with_name(f"{entry.stem}-bf16.pt2")]


def test_int8_is_not_a_candidate_without_int8_instructions(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    builds = Builds(monkeypatch, seconds=0.004, int8=0.0)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    _, choice = serve(builds)
    assert choice.served == "aoti-bf16" and builds.sources == ["program-bf16.pt2"]


def test_asked_int8_serves_the_int8_package_or_fp32_without_one(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    asked = HandlerSettings(threads=1, tile=8, overlap=2, tile_batch=2, precision="int8")
    builds = Builds(monkeypatch, seconds=0.004, int8=0.01)
    served, choice = serve(builds, asked)
    assert (choice.served, choice.reason) == ("aoti-int8", "asked for int8") and builds.sources == ["program-int8.pt2"]
    assert torch.allclose(served(torch.zeros(1)), torch.full((1,), 0.015))

    without = Builds(monkeypatch, seconds=0.004)
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path / "other"))
    served, choice = serve(without, asked)
    assert served is TORCHSCRIPT["fp32"] and (choice.served, choice.graph) == ("fp32", "torchscript")
    assert "there is no int8 program" in choice.reason and choice.reason.endswith("so TorchScript fp32")


def test_the_decision_is_kept_apart_for_an_archive_with_an_int8_program(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DENOISER_CACHE_DIR", str(tmp_path))
    assert serve(Builds(monkeypatch, seconds=0.004))[1].served == "aoti-bf16"
    with_int8 = serve(Builds(monkeypatch, seconds=0.004, int8=0.001))[1]
    assert with_int8.served == "aoti-int8" and not with_int8.reason.startswith("cached: ")
