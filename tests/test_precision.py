"""The precision choice: native candidates only, interleaved medians, the simpler graph unless another is clearly faster."""
from __future__ import annotations

import time

import pytest
import torch

from models import precision
from models.precision import PrecisionChoice, candidates, choose_precision, interleaved_medians, native_bf16, pick, wants_bf16

BATCH = torch.rand(2, 3, 8, 8)


def graph(seconds: float, offset: float = 0.0):
    """A stand-in graph that takes ``seconds`` and adds ``offset`` to its input."""

    def run(x: torch.Tensor) -> torch.Tensor:
        time.sleep(seconds)
        return x + offset

    return run


@pytest.fixture()
def native(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16."""

    def set_native(value: bool) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"} if value else {"avx2"}))

    return set_native


def test_bf16_is_kept_where_native_clearly_faster_and_close(native) -> None:
    native(True)
    choice = choose_precision({"fp32": graph(0.02), "bf16": graph(0.005, 0.01)}, "auto", BATCH, tolerance=0.03)
    assert choice.precision == "bf16", choice
    assert choice.seconds["bf16"] < choice.seconds["fp32"]
    assert choice.max_abs_diff == {"bf16": pytest.approx(0.01, abs=1e-6)}


def test_fp32_without_native_bf16_without_timing(native) -> None:
    native(False)
    choice = choose_precision({"fp32": graph(0.0), "bf16": graph(0.0)}, "auto", BATCH, tolerance=0.03)
    assert (choice.precision, choice.seconds) == ("fp32", {}) and "only native candidate" in choice.reason


def test_fp32_when_bf16_is_slower_or_too_far_off(native) -> None:
    native(True)
    slower = choose_precision({"fp32": graph(0.0), "bf16": graph(0.02)}, "auto", BATCH, tolerance=0.03)
    off = choose_precision({"fp32": graph(0.02), "bf16": graph(0.0, 0.1)}, "auto", BATCH, tolerance=0.03)
    assert (slower.precision, off.precision) == ("fp32", "fp32")
    assert "not 10% faster" in slower.reason and "differs by 0.1" in off.reason


def test_a_gain_under_the_margin_keeps_the_simpler_graph() -> None:
    assert pick({"fp32": 1.0, "bf16": 0.95}, {"bf16": 0.0}, 0.03, 0.10)[0] == "fp32"
    assert pick({"fp32": 1.0, "bf16": 0.89}, {"bf16": 0.0}, 0.03, 0.10)[0] == "bf16"
    assert pick({"fp32": 1.0, "bf16": 0.5}, {"bf16": 0.031}, 0.03, 0.10)[0] == "fp32"
    assert pick({"fp32": 1.0, "bf16": 0.5}, {"bf16": 0.0}, 0.03, 0.6)[0] == "fp32"


def test_medians_are_taken_over_interleaved_rounds() -> None:
    order: list[str] = []

    def recording(name: str, seconds: float):
        def run(x: torch.Tensor) -> torch.Tensor:
            order.append(name)
            time.sleep(seconds)
            return x
        return run

    a, b = recording("a", 0.002), recording("b", 0.01)
    medians = interleaved_medians({"a": lambda: a(BATCH), "b": lambda: b(BATCH)}, rounds=4)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert medians["a"] < medians["b"]


def test_asked_precisions_and_archives_without_bf16(native) -> None:
    native(False)
    graphs = {"fp32": graph(0.0), "bf16": graph(0.0, 0.2)}
    assert choose_precision(graphs, "fp32", BATCH, 0.03).precision == "fp32"
    assert choose_precision(graphs, "bf16", BATCH, 0.03) == PrecisionChoice("bf16", "asked for bf16")
    lacking = choose_precision({"fp32": graph(0.0)}, "bf16", BATCH, 0.03)
    assert lacking.precision == "fp32" and "lacks" in lacking.reason
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision(graphs, "fp16", BATCH, 0.03)


def test_candidates_are_the_natively_run_graphs_simplest_first(native) -> None:
    cpu = torch.device("cpu")
    native(True)
    assert candidates({"bf16": 1, "fp32": 1}, cpu) == ["fp32", "bf16"]
    native(False)
    assert candidates({"bf16": 1, "fp32": 1}, cpu) == ["fp32"]


def test_wants_bf16_follows_the_cpu_flags(native) -> None:
    cpu = torch.device("cpu")
    native(True)
    assert native_bf16(cpu) and wants_bf16("auto", cpu) and not wants_bf16("fp32", cpu)
    native(False)
    assert not native_bf16(cpu) and not wants_bf16("auto", cpu) and wants_bf16("bf16", cpu)


def test_the_described_choice_names_every_measurement() -> None:
    line = PrecisionChoice("bf16", "why", {"fp32": 0.2, "bf16": 0.1}, {"bf16": 0.004}).describe()
    assert line == "bf16: why; median per batch: fp32 200.0 ms, bf16 100.0 ms (max |diff| 0.0040)"
