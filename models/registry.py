"""The served model names, their architectures, default configurations and safe weight I/O."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .blocks import UNetSkeleton
from .cbam_resunet import CBAMResUNet
from .resunet import ResUNet
from .unet import UNet

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ModelSpec:
    """How to build one served model and what its archive is called."""

    name: str
    architecture: type[UNetSkeleton]
    archive: str
    title: str
    role: str  # what the endpoint is for, as the page and the README say it (docs/results.md measures it)
    config: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("model_unet", UNet, "UNET", "U-Net",
                  "The fastest, and the lowest quality of the three: for previews, large images and many photos.", {"width": 16, "depth": 4}),
        ModelSpec("model_runet", ResUNet, "R-UNET", "Residual U-Net",
                  "Balanced: better than the U-Net, at about twice its time.", {"width": 24, "depth": 4}),
        ModelSpec("model_arunet", CBAMResUNet, "A-R-UNET", "Residual U-Net + CBAM",
                  "The highest quality: the Residual U-Net with attention, run on each tile and its transpose.", {"width": 24, "depth": 4}),
    )
}


def build_model(name: str, **overrides: Any) -> UNetSkeleton:
    """Build the named network with its default configuration, updated by ``overrides``."""
    spec = MODELS[name]
    return spec.architecture(**{**spec.config, **overrides})


def weight_paths(name: str, weights_dir: Path = WEIGHTS_DIR) -> tuple[Path, Path]:
    """The ``.safetensors`` tensor file and ``.json`` description of a model's weights."""
    return weights_dir / f"{name}.safetensors", weights_dir / f"{name}.json"


def graphs_id(name: str, weights_dir: Path = WEIGHTS_DIR) -> str:
    """What a model's graphs are traced from: its name and the SHA-256 of its tensor file."""
    tensors_path, _ = weight_paths(name, weights_dir)
    return f"{name}:{hashlib.sha256(tensors_path.read_bytes()).hexdigest()}"


def save_weights(name: str, model: nn.Module, info: dict[str, Any], weights_dir: Path = WEIGHTS_DIR) -> None:
    """Write a model's tensors (safetensors) and its configuration plus ``info`` (JSON)."""
    tensors_path, info_path = weight_paths(name, weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tensors_path))
    info_path.write_text(json.dumps(info, indent=2) + "\n")


def read_weights(name: str, weights_dir: Path = WEIGHTS_DIR) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A model's saved tensors (safetensors, no unpickling) and the JSON description beside them."""
    tensors_path, info_path = weight_paths(name, weights_dir)
    if not tensors_path.exists():
        raise FileNotFoundError(
            f"no trained weights for {name} at {tensors_path}; train them with "
            f"'python -m scripts.training.train --model {name}'"
        )
    return load_file(str(tensors_path)), json.loads(info_path.read_text())


def load_pretrained(name: str, weights_dir: Path = WEIGHTS_DIR) -> UNetSkeleton:
    """Rebuild a model from its JSON configuration and load its tensors."""
    tensors, info = read_weights(name, weights_dir)
    model = build_model(name, **info.get("config", {}))
    model.load_state_dict(tensors)
    return model.eval()
