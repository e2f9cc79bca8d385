"""The handler's settings: the ``handler:`` section of an archive's ``model-config.yaml``.

A plain dataclass outside ``handler.py`` because TorchServe's loader requires the handler
module to define exactly one class.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from .imaging import MAX_PIXELS
from .tiling import TileConfig

THREADS_ENV = "DENOISER_THREADS"


@dataclass(frozen=True)
class HandlerSettings:
    """The ``handler:`` section of ``model-config.yaml``; every key is optional."""

    threads: int = 0
    tile: int = TileConfig.tile
    overlap: int = TileConfig.overlap
    tile_batch: int = TileConfig.batch_size
    max_pixels: int = MAX_PIXELS

    @classmethod
    def from_context(cls, context: Any) -> HandlerSettings:
        """Settings from the model's YAML config, with ``DENOISER_THREADS`` overriding ``threads``."""
        section = (getattr(context, "model_yaml_config", None) or {}).get("handler") or {}
        known = {f.name for f in fields(cls)}
        values = {key: int(value) for key, value in section.items() if key in known}
        if os.environ.get(THREADS_ENV):
            values["threads"] = int(os.environ[THREADS_ENV])
        return cls(**values)

    @property
    def tiles(self) -> TileConfig:
        """The tiling configuration these settings describe."""
        return TileConfig(tile=self.tile, overlap=self.overlap, batch_size=self.tile_batch)
