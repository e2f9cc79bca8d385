"""Every serving setting in one place: the handler's own and TorchServe's per-model ones.

``serving_config(name)`` is what ``scripts.serving.archives`` writes into each archive's
``model-config.yaml``: ``SERVING_CONFIG`` with the model's own ``ENSEMBLES`` entry; its
``handler:`` section is read back by ``HandlerSettings`` in the worker, where
``DENOISER_THREADS``, ``DENOISER_PRECISION``, ``DENOISER_HIDDEN_POOL_NICE`` and
``DENOISER_COMPILED`` override it and an unknown key is refused. A plain module outside
``handler.py`` because TorchServe's loader requires the handler module to define exactly one class.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .ensemble import check_ensemble
from .imaging import MAX_PIXELS
from .precision import HANDLER_PRECISIONS, check_precision
from .tiling import TileConfig

THREADS_ENV = "DENOISER_THREADS"
PRECISION_ENV = "DENOISER_PRECISION"
HIDDEN_POOL_NICE_ENV = "DENOISER_HIDDEN_POOL_NICE"
COMPILED_ENV = "DENOISER_COMPILED"
# Whether the precision decision may time (and then serve) a package compiled on this machine
# from the archive's exported program (models.compiled): "auto" where a C++ compiler is found,
# "off" for the TorchScript graphs alone.
COMPILED_MODES = ("auto", "off")
# Largest |bf16 - fp32| on the warm-up tiles (0-1 scale) for bf16 to be kept: about 5 steps of
# 8 bits. The trained networks differ by 0.01-0.02 at worst on random tiles.
BF16_TOLERANCE = 0.03
# A graph more complex than fp32 is served only where its median batch time is at least this
# much below the simpler graph's (models.precision.pick): a smaller gain is within the noise
# of a shared 2-vCPU machine, and the simpler graph is the safer one.
CHOICE_MARGIN = 0.10
# How much lower the CPU priority (nice) of an endpoint's hidden pools' workers is: the
# registrations of the same archive under another name that the front sends larger images to
# (scripts/serving/front.py POOLS). 0: the pools alone keep small photos within the acceptance, and a
# lower priority made a 40 MP photo about 3x slower under a steady stream of small ones
# (docs/fairness.md, "Measurements"); a deployment that favours small photos may raise it.
HIDDEN_POOL_NICE = 0


@dataclass(frozen=True)
class HandlerSettings:
    """The ``handler:`` section of ``model-config.yaml``; every key is optional."""

    threads: int = 2
    tile: int = TileConfig.tile
    overlap: int = TileConfig.overlap
    tile_batch: int = TileConfig.batch_size
    max_pixels: int = MAX_PIXELS
    precision: str = "auto"
    bf16_tolerance: float = BF16_TOLERANCE
    hidden_pool_nice: int = HIDDEN_POOL_NICE
    compiled: str = "auto"
    ensemble: int = 1

    def __post_init__(self) -> None:
        check_precision(self.precision, "handler.precision", HANDLER_PRECISIONS)
        check_ensemble(self.ensemble, "handler.ensemble")
        if self.compiled not in COMPILED_MODES:
            raise ValueError(f"handler.compiled must be one of {', '.join(COMPILED_MODES)}, not {self.compiled!r}")
        TileConfig(self.tile, self.overlap, self.tile_batch)  # raises ValueError on a bad combination

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None, environ: Mapping[str, str] = os.environ) -> HandlerSettings:
        """Settings from a ``handler:`` section, with the environment's overrides; unknown keys are refused."""
        section = dict(section or {})
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise ValueError(f"unknown key(s) in model-config.yaml handler section: {', '.join(unknown)}; "
                             f"known: {', '.join(known)}")
        if environ.get(THREADS_ENV):
            section["threads"] = environ[THREADS_ENV]
        if environ.get(PRECISION_ENV):
            section["precision"] = environ[PRECISION_ENV]
        if environ.get(HIDDEN_POOL_NICE_ENV):
            section["hidden_pool_nice"] = environ[HIDDEN_POOL_NICE_ENV]
        if environ.get(COMPILED_ENV):
            section["compiled"] = environ[COMPILED_ENV]
        casts = {"str": str, "float": float, "int": int}
        return cls(**{key: casts[str(known[key])](value) for key, value in section.items()})

    @classmethod
    def from_context(cls, context: Any) -> HandlerSettings:
        """Settings from the model's YAML config in a TorchServe context."""
        return cls.from_section((getattr(context, "model_yaml_config", None) or {}).get("handler"))

    @property
    def tiles(self) -> TileConfig:
        """The tiling configuration these settings describe."""
        return TileConfig(tile=self.tile, overlap=self.overlap, batch_size=self.tile_batch)


# TorchServe's per-model settings. One worker per model and one request per batch: three models
# share 2 vCPUs, a batch of differently sized photographs cannot be stacked anyway, and the
# handler already batches the tiles of one image. responseTimeout covers the largest accepted
# image (max_pixels) on the slowest network; past it TorchServe would kill the worker.
# config.properties repeats the workers and the timeout as TorchServe's fallbacks, and nginx waits
# longer than the timeout: tests/test_shared_settings.py checks that they agree. startupTimeout
# leaves a worker room to wait for the others' compiles under the decision's lock and make its own
# (models/compiled.py COMPILE_TIMEOUT_S).
SERVING_CONFIG: dict[str, Any] = {
    "minWorkers": 1,
    "maxWorkers": 1,
    "batchSize": 1,
    "maxBatchDelay": 0,
    "responseTimeout": 600,
    "startupTimeout": 300,
    "handler": asdict(HandlerSettings()),
}

# Each served model's geometric self-ensemble (models.ensemble): how many rotations and flips of
# each tile batch its worker runs and averages. Each costs one more network call per tile; what
# each size buys in quality and time: docs/results.md, "Self-ensemble".
ENSEMBLES: dict[str, int] = {"model_unet": 1, "model_runet": 1, "model_arunet": 2}


def serving_config(name: str) -> dict[str, Any]:
    """TorchServe's settings for model ``name``: ``SERVING_CONFIG`` with the model's own ``handler.ensemble``."""
    return {**SERVING_CONFIG, "handler": {**SERVING_CONFIG["handler"], "ensemble": ENSEMBLES[name]}}
