"""Plain U-Net denoiser (Ronneberger et al., 2015), served as ``model_unet``."""
from __future__ import annotations

from .blocks import ConvBlock, UNetSkeleton


class UNet(UNetSkeleton):
    """U-Net whose stages are two plain 3x3 conv + ReLU layers; residual (noise) output."""

    def __init__(self, width: int = 16, depth: int = 4) -> None:
        super().__init__(ConvBlock, width=width, depth=depth)
