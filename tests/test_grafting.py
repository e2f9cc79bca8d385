"""Grafting CBAM onto a Residual U-Net: the same function to the bit, gates that learn, mismatches refused."""
from __future__ import annotations

import pytest
import torch

from models import build_model
from models.grafting import GATE_COMPENSATION, attention_blocks, graft_attention
from tests.networks import random_network

X = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def grafted(width: int = 8, depth: int = 2, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A random Residual U-Net (not the identity) and a CBAM network grafted from it."""
    torch.manual_seed(seed)
    resunet = random_network("model_runet", width=width, depth=depth)
    cbam = build_model("model_arunet", width=width, depth=depth).eval()
    graft_attention(resunet, cbam)
    return resunet, cbam


def test_the_grafted_network_computes_exactly_what_the_residual_unet_does() -> None:
    resunet, cbam = grafted()
    with torch.no_grad():
        assert (resunet(X) - X).abs().max() > 1e-3
        assert torch.equal(cbam(X), resunet(X))


def test_every_gate_starts_at_one_half_and_the_branch_is_scaled_to_match() -> None:
    resunet, cbam = grafted()
    blocks = attention_blocks(cbam)
    assert len(blocks) == 2 * 2 + 1  # encoders, decoders and the bottleneck at depth 2
    feature = torch.rand(1, blocks[0].body[-1].out_channels, 8, 8)
    with torch.no_grad():
        assert torch.equal(blocks[0].attention.channel(feature), feature / 2)
        assert torch.equal(blocks[0].attention.spatial(feature), feature / 2)
        original = resunet.encoders[0].body[-1].weight
        assert torch.equal(cbam.encoders[0].body[-1].weight, original * GATE_COMPENSATION)


def test_the_gates_learn_from_the_first_step() -> None:
    _, cbam = grafted()
    cbam.train()
    loss = (cbam(X) - X.flip(-1)).square().mean()
    loss.backward()
    for block in attention_blocks(cbam):
        assert block.attention.channel.mlp[-1].weight.grad.abs().sum() > 0
        assert block.attention.spatial.conv.weight.grad.abs().sum() > 0


def test_other_networks_are_refused() -> None:
    cbam = build_model("model_arunet", width=8, depth=2)
    with pytest.raises(ValueError, match="cannot graft attention"):
        graft_attention(random_network("model_unet", width=8, depth=2), cbam)
    with pytest.raises(ValueError, match="cannot graft attention"):
        graft_attention(build_model("model_arunet", width=8, depth=2), cbam)
    with pytest.raises(RuntimeError, match="size mismatch"):
        graft_attention(random_network("model_runet", width=16, depth=2), cbam)
