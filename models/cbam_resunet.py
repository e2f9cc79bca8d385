"""Residual U-Net with CBAM attention in every block, served as ``model_arunet``."""
from __future__ import annotations

from functools import partial

from .blocks import ResBlock, UNetSkeleton


class CBAMResUNet(UNetSkeleton):
    """Residual U-Net whose blocks apply CBAM (channel, then spatial attention) before the sum."""

    def __init__(self, width: int = 16, depth: int = 4) -> None:
        super().__init__(partial(ResBlock, attention=True), width=width, depth=depth)
