"""Function-preserving widening: a wider network starts out computing what the narrow one computes, then learns."""
from __future__ import annotations

import pytest
import torch

from models import MODELS, WEIGHTS_DIR, build_model, load_pretrained
from models.widening import ChannelMap, concatenated, copy_map, widen, widen_into
from tests.networks import random_network

# Widths each architecture can grow to from 8: CBAM's spatial mean needs a whole factor.
WIDER = {"model_unet": (12, 16), "model_runet": (12, 16), "model_arunet": (16, 24)}


def noise_estimates(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the network subtracts from ``x`` (its predicted noise), compared rather than the near-identity output."""
    with torch.no_grad():
        return x - net(x)


@pytest.mark.parametrize(("name", "width"), [(name, width) for name, widths in WIDER.items() for width in widths])
def test_a_widened_random_network_computes_the_same_function(name: str, width: int) -> None:
    torch.manual_seed(0)
    narrow = random_network(name, width=8, depth=2)
    wide = widen(narrow, width, seed=1)
    assert wide.head.in_channels == width and sum(p.numel() for p in wide.parameters()) > sum(
        p.numel() for p in narrow.parameters())
    x = torch.rand(2, 3, 32, 48)
    before = noise_estimates(narrow, x)
    assert before.abs().max() > 0.01, "the narrow network must not be the identity"
    assert torch.allclose(noise_estimates(wide.eval(), x), before, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("name", "width"), [("model_unet", 24), ("model_runet", 32), ("model_arunet", 48)])
def test_the_committed_weights_widen_without_changing_their_answer(name: str, width: int) -> None:
    narrow = load_pretrained(name, WEIGHTS_DIR)
    assert narrow.head.in_channels == MODELS[name].config["width"]
    wide = widen(narrow, width).eval()
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(noise_estimates(wide, x), noise_estimates(narrow, x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_training_step_changes_the_widened_network_and_separates_the_copies(name: str) -> None:
    torch.manual_seed(0)
    narrow = random_network(name, width=8, depth=2)
    wide = widen(narrow, 16).train()
    x, target = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    before = noise_estimates(wide, x)
    optimizer = torch.optim.SGD(wide.parameters(), lr=0.1)
    torch.nn.functional.mse_loss(wide(x), target).backward()
    optimizer.step()
    assert (noise_estimates(wide, x) - before).abs().max() > 1e-4
    first = wide.encoders[0].body[0].weight  # channel 8 + k started as a copy of channel k
    assert not torch.allclose(first[8:], first[:8])


def test_cbam_networks_widen_by_whole_factors_only() -> None:
    with pytest.raises(ValueError, match="whole factor"):
        widen(random_network("model_arunet", width=8, depth=2), 12)


def test_only_the_width_may_grow() -> None:
    narrow = random_network("model_unet", width=8, depth=2)
    with pytest.raises(ValueError, match="cannot widen 8 channels to 4"):
        widen(narrow, 4)
    with pytest.raises(ValueError, match="only the width may change"):
        widen_into(narrow, build_model("model_unet", width=16, depth=3))
    with pytest.raises(ValueError, match="only the width may change"):
        widen_into(narrow, build_model("model_runet", width=16, depth=2))


def test_a_network_with_normalisation_buffers_is_refused() -> None:
    narrow = random_network("model_unet", width=8, depth=2)
    narrow.head.register_buffer("running_mean", torch.zeros(3))
    with pytest.raises(ValueError, match="buffers"):
        widen(narrow, 16)


def test_copies_share_their_original_weights_and_concatenation_shifts_the_second_part() -> None:
    mapping = copy_map(4, 10, torch.Generator().manual_seed(0))
    assert mapping.source.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1] and not mapping.uniform()
    totals = torch.zeros(4).index_add_(0, mapping.source, mapping.share)
    assert torch.allclose(totals, torch.ones(4)) and (mapping.share > 0.1).all()
    assert copy_map(3, 6, torch.Generator()).uniform()
    joined = concatenated(mapping, ChannelMap(torch.tensor([0, 1, 0]), torch.ones(3)), offset=4)
    assert joined.source.tolist()[-3:] == [4, 5, 4] and len(joined.share) == 13
