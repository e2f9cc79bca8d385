"""The precision choice: bf16 only where native, faster and close to fp32; fp32 otherwise or when asked."""
from __future__ import annotations

import time

import pytest
import torch

from models import precision
from models.precision import choose_precision, native_bf16, wants_bf16

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


def test_bf16_is_kept_where_native_faster_and_close(native) -> None:
    native(True)
    choice = choose_precision({"fp32": graph(0.02), "bf16": graph(0.0, 0.01)}, "auto", BATCH, tolerance=0.03)
    assert choice.precision == "bf16"
    assert choice.bf16_seconds < choice.fp32_seconds and choice.max_abs_diff == pytest.approx(0.01, abs=1e-6)


def test_fp32_without_native_bf16_without_timing(native) -> None:
    native(False)
    choice = choose_precision({"fp32": graph(0.0), "bf16": graph(0.0)}, "auto", BATCH, tolerance=0.03)
    assert (choice.precision, choice.fp32_seconds) == ("fp32", None) and "no native bf16" in choice.reason


def test_fp32_when_bf16_is_slower_or_too_far_off(native) -> None:
    native(True)
    slower = choose_precision({"fp32": graph(0.0), "bf16": graph(0.02)}, "auto", BATCH, tolerance=0.03)
    off = choose_precision({"fp32": graph(0.02), "bf16": graph(0.0, 0.1)}, "auto", BATCH, tolerance=0.03)
    assert (slower.precision, off.precision) == ("fp32", "fp32")
    assert "not faster" in slower.reason and "differs by 0.1" in off.reason


def test_asked_precisions_and_archives_without_bf16(native) -> None:
    native(False)
    graphs = {"fp32": graph(0.0), "bf16": graph(0.0, 0.2)}
    assert choose_precision(graphs, "fp32", BATCH, 0.03).precision == "fp32"
    forced = choose_precision(graphs, "bf16", BATCH, 0.03)
    assert forced.precision == "bf16" and forced.max_abs_diff == pytest.approx(0.2, abs=1e-6)
    assert choose_precision({"fp32": graph(0.0)}, "bf16", BATCH, 0.03).precision == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision(graphs, "fp16", BATCH, 0.03)


def test_wants_bf16_follows_the_cpu_flags(native) -> None:
    cpu = torch.device("cpu")
    native(True)
    assert native_bf16(cpu) and wants_bf16("auto", cpu) and not wants_bf16("fp32", cpu)
    native(False)
    assert not native_bf16(cpu) and not wants_bf16("auto", cpu) and wants_bf16("bf16", cpu)
