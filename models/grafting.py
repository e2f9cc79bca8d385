"""Grafting CBAM onto a trained Residual U-Net without changing what it computes, for warm starts.

The CBAM network (``model_arunet``) is the Residual U-Net (``model_runet``) with attention on
each block's residual branch: ``relu(spatial(channel(body(x))) + shortcut(x))``. Both gates are
``x * sigmoid(z)``. With the last layer of the channel MLP and the spatial convolution set to
zero, ``z`` is 0 whatever the input, so each gate halves its input, and multiplying the branch's
last convolution by 4 gives back exactly the Residual U-Net's block (powers of two: no rounding).
Every gate starts where the sigmoid is steepest and the channel MLP's first layer keeps its
random weights, so training moves the gates from the first step while the network starts out
computing what the Residual U-Net computes.
"""
from __future__ import annotations

import torch

from .blocks import CBAM, ResBlock, UNetSkeleton

# (source, target) served models: whose weights start which network by grafting.
GRAFTS: tuple[tuple[str, str], ...] = (("model_runet", "model_arunet"),)
# What the two halving gates take from the residual branch, given back by its last convolution.
GATE_COMPENSATION = 4.0


def attention_blocks(net: UNetSkeleton) -> list[ResBlock]:
    """The residual blocks of ``net`` that carry CBAM attention, in module order."""
    return [module for module in net.modules() if isinstance(module, ResBlock) and isinstance(module.attention, CBAM)]


@torch.no_grad()
def graft_attention(resunet: UNetSkeleton, cbam: UNetSkeleton) -> None:
    """Load a Residual U-Net's weights into a CBAM network of the same width and depth, computing the same function.

    Raises ``ValueError`` when ``cbam`` has parameters other than the Residual U-Net's and its
    attention's, or ``resunet`` has any the CBAM network lacks.
    """
    missing, unexpected = cbam.load_state_dict(resunet.state_dict(), strict=False)
    strays = [key for key in missing if ".attention." not in key]
    if unexpected or strays or not missing:
        raise ValueError(f"cannot graft attention: unexpected {unexpected}, missing outside attention {strays}, "
                         f"{'no' if not missing else len(missing)} attention tensors")
    for block in attention_blocks(cbam):
        last = block.attention.channel.mlp[-1]
        for gate in (last, block.attention.spatial.conv):
            gate.weight.zero_()
            gate.bias.zero_()
        block.body[-1].weight.mul_(GATE_COMPENSATION)
        block.body[-1].bias.mul_(GATE_COMPENSATION)
