"""Small randomly initialised networks for tests."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from models import MODELS, build_model, save_weights
from models.blocks import UNetSkeleton


def random_network(name: str, **config: Any) -> UNetSkeleton:
    """``build_model`` with its zero-initialised head randomised, so the network is not the identity."""
    model = build_model(name, **config).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)
    return model


def saved_random_networks(folder: Path, names: Iterable[str] = MODELS, seed: int = 0, **config: Any) -> Path:
    """``random_network`` of each name (drawn from ``seed``) saved into ``folder`` as training saves weights; returns it."""
    torch.manual_seed(seed)
    for name in names:
        save_weights(name, random_network(name, **config), {"config": config}, folder)
    return folder
