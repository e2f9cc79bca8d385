"""The geometric self-ensemble: transforms undone exactly, the full ensemble equivariant, sizes checked."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from models.ensemble import ENSEMBLE_SIZES, TRANSFORMS, GeometricEnsemble, check_ensemble, ensembled, transform, untransform


def random_convolution(seed: int = 0) -> nn.Module:
    """A 3x3 convolution with random weights: neither the identity nor symmetric under rotations or flips."""
    torch.manual_seed(seed)
    return nn.Conv2d(3, 3, 3, padding=1).eval()


class CountingNetwork:
    """A network that counts its calls and the batch shapes it was given."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(batch.shape))
        return self.net(batch)


BATCH = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))


def test_each_transform_is_undone_and_the_eight_differ() -> None:
    seen = set()
    for index in range(8):
        moved = transform(BATCH, index)
        assert torch.equal(untransform(moved, index), BATCH)
        seen.add(moved.numpy().tobytes())
    assert len(seen) == 8


@pytest.mark.parametrize("size", ENSEMBLE_SIZES)
def test_a_network_that_commutes_with_rotations_is_unchanged(size: int) -> None:
    """A pointwise network gives the same answer in every orientation, so undoing each transform must give it back."""
    torch.manual_seed(2)
    pointwise = nn.Conv2d(3, 3, 1).eval()
    with torch.no_grad():
        torch.testing.assert_close(ensembled(pointwise, size)(BATCH), pointwise(BATCH))


@pytest.mark.parametrize("size", ENSEMBLE_SIZES)
def test_the_network_runs_once_per_transform_on_same_shaped_batches(size: int) -> None:
    counting = CountingNetwork(random_convolution())
    with torch.no_grad():
        answer = GeometricEnsemble(counting, size)(BATCH)
    assert answer.shape == BATCH.shape and answer.dtype == torch.float32
    assert counting.shapes == [tuple(BATCH.shape)] * size == [tuple(BATCH.shape)] * len(TRANSFORMS[size])


def test_the_full_ensemble_is_equivariant_and_differs_from_the_network() -> None:
    """Averaged over all of D4, rotating or flipping the input rotates or flips the answer exactly."""
    net = random_convolution()
    full = ensembled(net, 8)
    with torch.no_grad():
        plain, answer = net(BATCH), full(BATCH)
        assert (answer - plain).abs().max() > 1e-3
        for index in range(8):
            torch.testing.assert_close(full(transform(BATCH, index)), transform(answer, index))


def test_rectangular_images_come_back_in_their_shape() -> None:
    wide = torch.rand(1, 3, 8, 20, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert ensembled(random_convolution(), 4)(wide).shape == wide.shape


def test_one_is_the_network_itself_and_other_sizes_are_refused() -> None:
    net = random_convolution()
    assert ensembled(net, 1) is net
    assert check_ensemble(4) == 4
    for size in (0, 3, 16):
        with pytest.raises(ValueError, match="handler.ensemble must be one of 1, 2, 4, 8"):
            check_ensemble(size, "handler.ensemble")
