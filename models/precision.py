"""Where bfloat16 runs natively: the CPU's AVX512-BF16 or AMX units, or a CUDA GPU with bf16 support.

Training autocasts to bf16 only there; serving additionally times both graphs and compares
their outputs before keeping bf16 (``handler.py``). Elsewhere bf16 would be emulated and slower
than fp32, so everything stays fp32.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")
PRECISIONS = ("auto", "fp32", "bf16")


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo is absent)."""
    if not CPUINFO.exists():
        return frozenset()
    for line in CPUINFO.read_text().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 convolutions in hardware rather than by emulation."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def check_precision(precision: str, name: str = "precision") -> None:
    """Refuse anything but ``auto``, ``fp32`` or ``bf16``, naming the setting ``name``."""
    if precision not in PRECISIONS:
        raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)}, not {precision!r}")


def wants_bf16(precision: str, device: torch.device) -> bool:
    """Resolve ``auto | fp32 | bf16`` for ``device``: ``auto`` means bf16 exactly where it is native."""
    check_precision(precision)
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


@dataclass(frozen=True)
class PrecisionChoice:
    """Which graph a worker serves with, why, and what was measured on the warm-up batch."""

    precision: str
    reason: str
    fp32_seconds: float | None = None
    bf16_seconds: float | None = None
    max_abs_diff: float | None = None


def median_seconds(net: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, rounds: int) -> float:
    """Median wall time of ``rounds`` calls of ``net`` on ``batch`` (synchronising CUDA)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        net(batch)
        if batch.is_cuda:
            torch.cuda.synchronize(batch.device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@torch.inference_mode()
def choose_precision(
    graphs: Mapping[str, Callable[[torch.Tensor], torch.Tensor]], requested: str, batch: torch.Tensor,
    tolerance: float, warm_up: int = 2, rounds: int = 3,
) -> PrecisionChoice:
    """Pick the fp32 or bf16 graph for serving on ``batch``'s device.

    ``fp32`` is taken as asked, and wherever the archive has no bf16 graph. ``auto`` keeps bf16
    only where it is native, measured faster on the warm-up batch, and within ``tolerance``
    (largest absolute difference, 0-1 scale) of the fp32 graph; ``bf16`` forces it. Both graphs
    are warmed up ``warm_up`` times first (TorchScript optimises a graph after its first calls).
    """
    check_precision(requested)
    if requested == "fp32":
        return PrecisionChoice("fp32", "asked for fp32")
    if "bf16" not in graphs:
        return PrecisionChoice("fp32", "the archive has no bf16 graph")
    if requested == "auto" and not native_bf16(batch.device):
        return PrecisionChoice("fp32", f"no native bf16 on {batch.device.type} (flags {', '.join(BF16_CPU_FLAGS)})")
    for _ in range(warm_up):
        for net in graphs.values():
            net(batch)
    fp32_s = median_seconds(graphs["fp32"], batch, rounds)
    bf16_s = median_seconds(graphs["bf16"], batch, rounds)
    diff = float((graphs["fp32"](batch) - graphs["bf16"](batch).float()).abs().max())
    measured = {"fp32_seconds": fp32_s, "bf16_seconds": bf16_s, "max_abs_diff": diff}
    if requested == "bf16":
        return PrecisionChoice("bf16", "asked for bf16", **measured)
    if diff > tolerance:
        return PrecisionChoice("fp32", f"bf16 differs by {diff:.4f} > {tolerance}", **measured)
    if bf16_s >= fp32_s:
        return PrecisionChoice("fp32", "bf16 is not faster here", **measured)
    return PrecisionChoice("bf16", "native, faster and within tolerance", **measured)
