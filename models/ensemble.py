"""Geometric self-ensemble: the network run on rotated and flipped copies of a batch, averaged back.

Noise is as likely in any orientation, but a trained network's errors are not: undoing each
transform and averaging cancels part of them, at one network call per transform. The sizes are
subsets of the eight rotations and flips of a square (D4), each chosen so that its transforms
differ as much as they can: 2 adds the transpose, 4 the two quarter turns with and without a flip.
"""
from __future__ import annotations

import torch

from .tiling import Network

# Which of the eight transforms (``transform``: quarter turns, then a flip from 4 on) each size runs.
TRANSFORMS: dict[int, tuple[int, ...]] = {1: (0,), 2: (0, 5), 4: (0, 1, 4, 5), 8: tuple(range(8))}
ENSEMBLE_SIZES = tuple(TRANSFORMS)


def transform(batch: torch.Tensor, index: int) -> torch.Tensor:
    """Transform ``index`` of D4 on the last two dimensions: ``index % 4`` quarter turns, then a left-right flip from 4 on."""
    turned = torch.rot90(batch, index % 4, (-2, -1))
    return turned.flip(-1) if index >= 4 else turned


def untransform(batch: torch.Tensor, index: int) -> torch.Tensor:
    """The inverse of ``transform(., index)``."""
    unflipped = batch.flip(-1) if index >= 4 else batch
    return torch.rot90(unflipped, -(index % 4), (-2, -1))


def check_ensemble(size: int, what: str = "ensemble") -> int:
    """``size`` if it is one of ``ENSEMBLE_SIZES``; otherwise ``ValueError`` naming ``what``."""
    if size not in TRANSFORMS:
        raise ValueError(f"{what} must be one of {', '.join(map(str, ENSEMBLE_SIZES))}, not {size!r}")
    return size


class GeometricEnsemble:
    """A network called once per transform of each batch, the answers transformed back and averaged (in float32)."""

    def __init__(self, net: Network, size: int) -> None:
        self.net = net
        self.indices = TRANSFORMS[check_ensemble(size)]

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        total = None
        for index in self.indices:
            answer = untransform(self.net(transform(batch, index).contiguous()), index).float()
            total = answer if total is None else total + answer
        return total / len(self.indices)


def ensembled(net: Network, size: int) -> Network:
    """``net`` itself for a size of 1, else its ``GeometricEnsemble`` of ``size`` transforms."""
    return net if check_ensemble(size) == 1 else GeometricEnsemble(net, size)
