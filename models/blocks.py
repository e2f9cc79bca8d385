"""Building blocks shared by the three denoisers: conv blocks, CBAM and the U-Net skeleton."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

BlockFactory = Callable[[int, int], nn.Module]


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    """A 3x3 convolution with 'same' zero padding."""
    return nn.Conv2d(in_ch, out_ch, 3, padding=1)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by ReLU (the plain U-Net stage)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(in_ch, out_ch), nn.ReLU(inplace=True),
            conv3x3(out_ch, out_ch), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ChannelAttention(nn.Module):
    """CBAM channel attention: a shared MLP over average- and max-pooled descriptors."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Global pooling ops (oneDNN kernels, about 10x faster than amax over (H, W) on channels-last
        # bf16, same values), and both descriptors through the shared MLP in one call.
        # Sliced by the batch size rather than chunked, so an exported graph's batch can vary.
        descriptors = self.mlp(torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)]))
        batch = x.shape[0]
        return x * torch.sigmoid(descriptors[:batch] + descriptors[batch:])


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a 7x7 convolution over channel-wise mean and max maps."""

    def __init__(self, channels: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def channel_max(self, x: torch.Tensor) -> torch.Tensor:
        """``x.amax(dim=1, keepdim=True)`` by halving the channels with ``torch.maximum`` (same values).

        On channels-last bf16 tensors with 16 or 32 channels ``amax`` over the channel axis runs a
        slow path; the elementwise maximum of the two halves is vectorised (tests check equality).
        """
        channels = self.channels
        while channels % 2 == 0 and channels > 1:
            channels //= 2
            x = torch.maximum(x[:, :channels], x[:, channels:])
        return x if channels == 1 else x.amax(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat([x.mean(dim=1, keepdim=True), self.channel_max(x)], dim=1)
        return x * torch.sigmoid(self.conv(maps))


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel, then spatial attention."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class ResBlock(nn.Module):
    """Residual block: conv-ReLU-conv (optionally CBAM) plus a projected shortcut, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, attention: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(in_ch, out_ch), nn.ReLU(inplace=True), conv3x3(out_ch, out_ch))
        self.attention = CBAM(out_ch) if attention else nn.Identity()
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.attention(self.body(x)) + self.shortcut(x))


class UNetSkeleton(nn.Module):
    """Encoder/decoder with concatenated skips, parameterised by the stage block.

    Stage ``i`` of the encoder has ``width * 2**i`` channels; the bottleneck sits after
    ``depth`` 2x poolings, so height and width must be multiples of ``2**depth``
    (``size_multiple``); callers pad to it (``models.tiling`` does).

    The network predicts the noise and returns ``x - noise`` (residual learning, as in
    DnCNN) and the head starts at zero, so an untrained network is exactly the identity: a
    short CPU training budget is
    spent on the noise rather than on learning to copy the image, and the salt-and-pepper
    and JPEG components, which are sparse or small, stay easy to represent.
    """

    def __init__(self, block: BlockFactory, width: int = 16, depth: int = 4, channels: int = 3) -> None:
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.size_multiple = 2**depth
        self.encoders = nn.ModuleList(
            block(c_in, c_out) for c_in, c_out in zip([channels] + widths[:-2], widths[:-1])
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = block(widths[-2], widths[-1])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(c * 2, c, 2, stride=2) for c in reversed(widths[:-1]))
        self.decoders = nn.ModuleList(block(c * 2, c) for c in reversed(widths[:-1]))
        self.head = nn.Conv2d(width, channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for encoder in self.encoders:
            h = encoder(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottleneck(h)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            h = decoder(torch.cat([up(h), skip], dim=1))
        return x - self.head(h)
