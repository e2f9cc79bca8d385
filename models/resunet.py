"""Residual U-Net denoiser, served as ``model_runet``."""
from __future__ import annotations

from .blocks import ResBlock, UNetSkeleton


class ResUNet(UNetSkeleton):
    """U-Net whose encoder and decoder stages are residual blocks; residual (noise) output."""

    def __init__(self, width: int = 16, depth: int = 4) -> None:
        super().__init__(ResBlock, width=width, depth=depth)
