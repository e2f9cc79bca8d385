"""Where bfloat16 runs natively: the CPU's AVX512-BF16 or AMX units, or a CUDA GPU with bf16 support.

Training autocasts to bf16 only there; serving additionally times both graphs and compares
their outputs before keeping bf16 (``handler.py``). Elsewhere bf16 would be emulated and slower
than fp32, so everything stays fp32.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")
PRECISIONS = ("auto", "fp32", "bf16")


@lru_cache(maxsize=None)
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


def wants_bf16(precision: str, device: torch.device) -> bool:
    """Resolve ``auto | fp32 | bf16`` for ``device``: ``auto`` means bf16 exactly where it is native."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision == "bf16" or (precision == "auto" and native_bf16(device))
