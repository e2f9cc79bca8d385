"""The served graph: TorchScript or a package compiled here, decided once by timing and kept with the decision."""
from __future__ import annotations

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
    """Fake ``models.compiled`` package builds: each compile writes the file; loads give a graph of ``seconds``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, seconds: float, offset: float = 0.01) -> None:
        self.compiled: list[Path] = []
        self.loaded: list[Path] = []
        self.programs: list[str] = []
        self.seconds, self.offset, self.fail = seconds, offset, False
        monkeypatch.setattr(compiled, "cxx_compiler", lambda: "/usr/bin/c++")
        monkeypatch.setattr(compiled, "compile_apart", self.compile)
        monkeypatch.setattr(compiled, "load_package", self.load)
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))

    def program(self, name: str) -> Path:
        self.programs.append(name)
        return Path(f"program-{name}.pt2")

    def compile(self, program: Path, path: Path, shape: tuple[int, ...]) -> Path:
        if self.fail:
            raise RuntimeError("the compiler crashed")
        assert shape == (2, 3, 8, 8)
        self.compiled.append(path)
        path.write_text(program.name)
        return path

    def load(self, path: Path, shape: tuple[int, ...]):
        self.loaded.append(path)
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
    assert builds.programs == ["bf16"] and len(builds.compiled) == 1
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
    assert builds.compiled == builds.loaded == builds.programs == []


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
