"""Function-preserving widening of the three U-Nets (Net2WiderNet, Chen et al. 2016), for warm starts.

A network of width ``w`` becomes one of width ``W >= w`` and the same depth that computes the
same function, so training the wider one starts from what the narrow one learned. Every
channel of the wide network copies one of the narrow network's: the first ``c`` of a layer are
the originals, the others cycle through them. A convolution's weights and bias are copied for
each channel it produces; for the channels it reads, a copy gets a random share of its
original's weights, the shares of one original summing to one, so every sum is unchanged while
the copies' gradients differ and training pulls them apart.

ReLU, max pooling, transposed convolutions, concatenated skips, the residual blocks' 1x1
projections and CBAM's channel-attention MLP (whose hidden layer is widened the same way) all
keep copies equal. CBAM's spatial attention pools the max and the mean over the channels: copies
leave the max unchanged, but the mean only when every channel has the same number of copies, so
a network with CBAM widens by whole factors only (16 to 32, not to 24). These networks have no
normalisation layers; a parameter or buffer the widening does not know is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import CBAM, ConvBlock, ResBlock, UNetSkeleton

# A copy's weight before normalising its original's shares to one: never a tiny or a dominant share.
SHARE_RANGE = (0.5, 1.5)


@dataclass(frozen=True)
class ChannelMap:
    """For each channel of a wide layer, the narrow channel it copies and its share of that channel's weights."""

    source: torch.Tensor
    share: torch.Tensor

    def uniform(self) -> bool:
        """Whether every narrow channel has the same number of copies."""
        counts = torch.bincount(self.source)
        return bool((counts == counts[0]).all())


def identity_map(channels: int) -> ChannelMap:
    """The map of channels that are not widened (the image's RGB)."""
    return ChannelMap(torch.arange(channels), torch.ones(channels))


def copy_map(narrow: int, wide: int, generator: torch.Generator) -> ChannelMap:
    """``wide`` channels copying ``narrow`` ones in turn, with random shares that sum to one per original."""
    if wide < narrow:
        raise ValueError(f"cannot widen {narrow} channels to {wide}")
    source = torch.arange(wide) % narrow
    low, high = SHARE_RANGE
    weights = low + (high - low) * torch.rand(wide, generator=generator, dtype=torch.float64)
    totals = torch.zeros(narrow, dtype=torch.float64).index_add_(0, source, weights)
    return ChannelMap(source, (weights / totals[source]).float())


def concatenated(first: ChannelMap, second: ChannelMap, offset: int) -> ChannelMap:
    """The map of ``torch.cat([a, b], dim=1)``: ``second``'s narrow channels come after ``offset`` of ``first``'s."""
    return ChannelMap(torch.cat([first.source, second.source + offset]), torch.cat([first.share, second.share]))


class Widener:
    """Copies a narrow network's parameters into a wide one, layer by layer, recording what it filled."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.filled: set[int] = set()

    def fresh(self, narrow: int, wide: int) -> ChannelMap:
        """A new map for a layer's output channels."""
        return copy_map(narrow, wide, self.generator)

    def fill(self, target: torch.Tensor, value: torch.Tensor) -> None:
        """Copy ``value`` into the wide network's tensor ``target``, which must have its shape."""
        if target.shape != value.shape:
            raise ValueError(f"widened tensor has shape {tuple(value.shape)}, the wide network's {tuple(target.shape)}")
        target.copy_(value)
        self.filled.add(id(target))

    def conv(self, narrow: nn.Conv2d | nn.ConvTranspose2d, wide: nn.Conv2d | nn.ConvTranspose2d,
             inputs: ChannelMap, outputs: ChannelMap) -> None:
        """A (transposed) convolution reading channels mapped by ``inputs`` and writing ones mapped by ``outputs``."""
        transposed = isinstance(narrow, nn.ConvTranspose2d)
        weight = narrow.weight.transpose(0, 1) if transposed else narrow.weight
        weight = weight[outputs.source][:, inputs.source] * inputs.share.to(weight)[None, :, None, None]
        self.fill(wide.weight, weight.transpose(0, 1) if transposed else weight)
        if narrow.bias is not None:
            self.fill(wide.bias, narrow.bias[outputs.source])

    def block(self, narrow: nn.Module, wide: nn.Module, inputs: ChannelMap) -> ChannelMap:
        """A ConvBlock or ResBlock reading channels mapped by ``inputs``; returns the map of its output."""
        if not isinstance(narrow, ConvBlock | ResBlock) or type(wide) is not type(narrow):
            raise TypeError(f"cannot widen a {type(narrow).__name__} into a {type(wide).__name__}")
        first, second = narrow.body[0], narrow.body[2]
        middle = self.fresh(first.out_channels, wide.body[0].out_channels)
        outputs = self.fresh(second.out_channels, wide.body[2].out_channels)
        self.conv(first, wide.body[0], inputs, middle)
        self.conv(second, wide.body[2], middle, outputs)
        if isinstance(narrow, ResBlock):
            if not isinstance(narrow.shortcut, nn.Conv2d):
                raise TypeError("a residual block without a 1x1 projection is not used by these networks")
            self.conv(narrow.shortcut, wide.shortcut, inputs, outputs)
            if isinstance(narrow.attention, CBAM):
                self.cbam(narrow.attention, wide.attention, outputs)
        return outputs

    def cbam(self, narrow: CBAM, wide: CBAM, channels: ChannelMap) -> None:
        """CBAM on channels mapped by ``channels``: the channel MLP widened, the spatial convolution copied."""
        if not channels.uniform():
            raise ValueError(
                "CBAM's spatial attention averages over the channels, which copies keep only when every channel "
                "has as many: widen a CBAM network by a whole factor (e.g. 16 to 32)"
            )
        squeeze, expand = narrow.channel.mlp[0], narrow.channel.mlp[2]
        hidden = self.fresh(squeeze.out_channels, wide.channel.mlp[0].out_channels)
        self.conv(squeeze, wide.channel.mlp[0], channels, hidden)
        self.conv(expand, wide.channel.mlp[2], hidden, channels)
        self.conv(narrow.spatial.conv, wide.spatial.conv, identity_map(2), identity_map(1))


@torch.no_grad()
def widen_into(narrow: UNetSkeleton, wide: UNetSkeleton, seed: int = 0) -> None:
    """Overwrite ``wide`` (same class and depth, at least as wide) so it computes what ``narrow`` computes."""
    if type(wide) is not type(narrow) or len(wide.encoders) != len(narrow.encoders):
        raise ValueError(f"cannot widen a {type(narrow).__name__} of depth {len(narrow.encoders)} into a "
                         f"{type(wide).__name__} of depth {len(wide.encoders)}: only the width may change")
    if list(narrow.buffers()):
        raise ValueError("the narrow network has buffers (normalisation statistics?), which widening does not handle")
    widener = Widener(seed)
    channels = identity_map(narrow.head.out_channels)
    skips = []
    for narrow_encoder, wide_encoder in zip(narrow.encoders, wide.encoders):
        channels = widener.block(narrow_encoder, wide_encoder, channels)
        skips.append(channels)
    channels = widener.block(narrow.bottleneck, wide.bottleneck, channels)
    stages = zip(narrow.ups, wide.ups, narrow.decoders, wide.decoders, reversed(skips))
    for narrow_up, wide_up, narrow_decoder, wide_decoder, skip in stages:
        upsampled = widener.fresh(narrow_up.out_channels, wide_up.out_channels)
        widener.conv(narrow_up, wide_up, channels, upsampled)
        channels = widener.block(narrow_decoder, wide_decoder,
                                 concatenated(upsampled, skip, narrow_up.out_channels))
    widener.conv(narrow.head, wide.head, channels, identity_map(narrow.head.out_channels))
    missed = [name for name, parameter in wide.named_parameters() if id(parameter) not in widener.filled]
    if missed:
        raise ValueError(f"widening left parameters of the wide network unset: {', '.join(missed)}")


def widen(narrow: UNetSkeleton, width: int, seed: int = 0) -> UNetSkeleton:
    """A network of ``narrow``'s class and depth at ``width`` that computes the same function."""
    wide = type(narrow)(width=width, depth=len(narrow.encoders))
    widen_into(narrow, wide, seed)
    return wide.train(narrow.training)
