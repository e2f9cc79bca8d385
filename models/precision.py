"""Which served graph is fastest here, measured fairly: native arithmetic, interleaved timing, a margin.

A graph is a *candidate* only where the CPU runs its arithmetic natively (bf16 on AVX512-BF16 or
AMX units; a CUDA GPU with bf16). Candidates are timed on the same real tile batch in
interleaved rounds (one call of each per round, the order rotating), so a burst of load from
elsewhere slows every graph alike, and compared by their medians. The simpler graph (fp32 before
bf16) is kept unless another is at least ``margin`` faster and within ``tolerance`` of fp32.
Where a compiled package of the chosen precision can be built (``models.compiled``), it is
timed against that TorchScript graph by the same rule, and then a package of the archive's int8
program, where the CPU has int8 instructions, against whichever won (``challenge``).
``models.choice_cache`` makes the choice once per machine and keeps it; ``models.graphs`` applies it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# The instructions oneDNN's int8 convolutions use (VNNI dot products, AMX tiles).
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
CPUINFO = Path("/proc/cpuinfo")
# Simplest first: a later graph must earn its place by being faster.
SERVED_PRECISIONS = ("fp32", "bf16")
PRECISIONS = ("auto", *SERVED_PRECISIONS)
# int8 is served only as a package compiled here from the archive's int8 program (models.compiled).
INT8 = "int8"
HANDLER_PRECISIONS = (*PRECISIONS, INT8)
TORCHSCRIPT = "torchscript"

Graph = Callable[[torch.Tensor], torch.Tensor]


@cache
def cpu_info() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where it is absent)."""
    if not CPUINFO.exists():
        return {}
    fields = {}
    for line in CPUINFO.read_text().splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo is absent)."""
    return frozenset(cpu_info().get("flags", "").split())


def cpu_name() -> str:
    """The CPU's model name as Linux reports it ("unknown" where it does not)."""
    return cpu_info().get("model name", "unknown")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 convolutions in hardware rather than by emulation."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def native_int8(device: torch.device) -> bool:
    """Whether ``device`` is a CPU with int8 dot-product instructions (VNNI or AMX) for a compiled int8 package."""
    return device.type == "cpu" and any(flag in cpu_flags() for flag in INT8_CPU_FLAGS)


def check_precision(precision: str, name: str = "precision", allowed: tuple[str, ...] = PRECISIONS) -> None:
    """Refuse a ``precision`` not in ``allowed`` (default ``auto``, ``fp32``, ``bf16``), naming the setting ``name``."""
    if precision not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {precision!r}")


def wants_bf16(precision: str, device: torch.device) -> bool:
    """Resolve ``auto | fp32 | bf16`` for training on ``device``: ``auto`` means bf16 exactly where it is native."""
    check_precision(precision)
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


def candidates(available: Mapping[str, object], device: torch.device) -> list[str]:
    """The precisions of ``available`` graphs worth timing on ``device``, simplest first."""
    native = {"fp32": True, "bf16": native_bf16(device)}
    return [name for name in SERVED_PRECISIONS if name in available and native[name]]


@dataclass(frozen=True)
class PrecisionChoice:
    """Which graph a worker serves with, why, and what was measured (median seconds per batch, |diff| to fp32).

    ``graph`` is ``torchscript`` (the archive's graph of ``precision``) or ``aoti`` (a package of
    that precision compiled here, ``models.compiled``; the only kind for ``int8``); candidates are
    named ``fp32``, ``bf16``, ``aoti-fp32``, ``aoti-bf16`` or ``aoti-int8`` in ``seconds`` and
    ``max_abs_diff``.
    """

    precision: str
    reason: str
    seconds: dict[str, float] = field(default_factory=dict)
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    graph: str = TORCHSCRIPT

    @property
    def served(self) -> str:
        """The served candidate's name: the precision, prefixed ``aoti-`` for a compiled package."""
        return self.precision if self.graph == TORCHSCRIPT else f"{self.graph}-{self.precision}"

    def describe(self) -> str:
        """One log line: the choice, the reason and each candidate's median time and difference."""
        timed = ", ".join(
            f"{name} {seconds * 1000:.1f} ms" + (f" (max |diff| {self.max_abs_diff[name]:.4f})" if name in self.max_abs_diff else "")
            for name, seconds in self.seconds.items()
        )
        return f"{self.served}: {self.reason}" + (f"; median per batch: {timed}" if timed else "")


def synchronise(output: torch.Tensor) -> None:
    """Wait for the queued CUDA work that makes ``output`` (nothing to wait for on the CPU)."""
    if output.is_cuda:
        torch.cuda.synchronize(output.device)


def interleaved_medians(calls: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each call over ``rounds`` rounds of one call each, the order rotating."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def warm_medians(graphs: Mapping[str, Graph], batch: torch.Tensor, warm_up: int, rounds: int) -> dict[str, float]:
    """Each graph's median seconds on ``batch`` (``interleaved_medians``) after ``warm_up`` calls of each."""
    for _ in range(warm_up):
        for net in graphs.values():
            net(batch)
    return interleaved_medians({name: lambda net=net: synchronise(net(batch)) for name, net in graphs.items()}, rounds)


def pick(seconds: Mapping[str, float], diffs: Mapping[str, float], tolerance: float, margin: float) -> tuple[str, str]:
    """(candidate, reason): walk the candidates simplest first, keeping the first (fp32) unless one is
    within ``tolerance`` of fp32 and at least ``margin`` faster than the kept one."""
    kept, reason = next(iter(seconds)), "no other graph is within tolerance and enough faster"
    for name in seconds:
        if name == kept:
            continue
        if diffs[name] > tolerance:
            reason = f"{name} differs by {diffs[name]:.4f} > {tolerance}"
        elif seconds[name] > (1 - margin) * seconds[kept]:
            reason = f"{name} is not {margin:.0%} faster than {kept} here"
        else:
            kept, reason = name, f"{name} is at least {margin:.0%} faster than {kept} and within tolerance"
    return kept, reason


@torch.inference_mode()
def choose_precision(
    graphs: Mapping[str, Graph], requested: str, batch: torch.Tensor, tolerance: float, margin: float = 0.10,
    warm_up: int = 2, rounds: int = 7,
) -> PrecisionChoice:
    """Pick the graph to serve on ``batch``'s device.

    ``fp32`` and ``bf16`` are taken as asked (fp32 where the archive has no bf16 graph). ``auto``
    times the candidates (``candidates``) after ``warm_up`` calls each (TorchScript optimises a
    graph after its first calls) and applies ``pick``; with a single candidate nothing is timed.
    """
    check_precision(requested)
    if requested != "auto":
        served = requested if requested in graphs else "fp32"
        why = f"asked for {requested}" + ("" if served == requested else ", which the archive lacks")
        return PrecisionChoice(served, why)
    names = candidates(graphs, batch.device)
    if names == ["fp32"]:
        return PrecisionChoice("fp32", f"fp32 is the only native candidate on {batch.device.type} "
                                       f"(bf16 needs one of {', '.join(BF16_CPU_FLAGS)} and a bf16 graph)")
    timed = {name: graphs[name] for name in names}
    seconds = warm_medians(timed, batch, warm_up, rounds)
    reference = timed["fp32"](batch)
    diffs = {name: float((net(batch).float() - reference).abs().max()) for name, net in timed.items() if name != "fp32"}
    served, reason = pick(seconds, diffs, tolerance, margin)
    return PrecisionChoice(served, reason, seconds, diffs)


@torch.inference_mode()
def challenge(
    choice: PrecisionChoice, served: Graph, reference: Graph, challenger: Graph, precision: str, graph: str,
    batch: torch.Tensor, tolerance: float, margin: float = 0.10, warm_up: int = 2, rounds: int = 7,
) -> PrecisionChoice:
    """``choice`` (served by ``served``), or ``challenger`` (the ``graph`` of ``precision``) where ``pick`` prefers it.

    Both are timed interleaved after ``warm_up`` calls each; the challenger's difference is taken
    against ``reference`` (the fp32 TorchScript graph). The result keeps every timing.
    """
    name = f"{graph}-{precision}"
    seconds = warm_medians({choice.served: served, name: challenger}, batch, warm_up, rounds)
    diff = float((challenger(batch).float() - reference(batch)).abs().max())
    kept, reason = pick(seconds, {name: diff}, tolerance, margin)
    timings, diffs = {**choice.seconds, **seconds}, {**choice.max_abs_diff, name: diff}
    if kept == name:
        return replace(choice, precision=precision, graph=graph, reason=f"{reason} ({choice.served}: {choice.reason})",
                       seconds=timings, max_abs_diff=diffs)
    return replace(choice, reason=f"{choice.reason}; {reason}", seconds=timings, max_abs_diff=diffs)
