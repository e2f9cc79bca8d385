"""Small randomly initialised networks for tests."""
from __future__ import annotations

from typing import Any

import torch

from models import build_model
from models.blocks import UNetSkeleton


def random_network(name: str, **config: Any) -> UNetSkeleton:
    """``build_model`` with its zero-initialised head randomised, so the network is not the identity."""
    model = build_model(name, **config).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    return model
