"""The three architectures: shapes, residual output, TorchScript tracing and the registry."""
from __future__ import annotations

import pytest
import torch

from models import MODELS, build_model, load_pretrained, save_weights
from models.blocks import ChannelAttention, SpatialAttention
from models.tiling import denoise_whole
from tests.networks import random_network

TINY = {"width": 4, "depth": 2}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shapes_at_multiples_and_odd_sizes(name: str) -> None:
    model = build_model(name, **TINY).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 48)).shape == (2, 3, 32, 48)
    odd = torch.rand(3, 37, 53)
    assert denoise_whole(model, odd, model.size_multiple).shape == odd.shape


@pytest.mark.parametrize("name", sorted(MODELS))
def test_default_configuration_is_fully_convolutional(name: str) -> None:
    model = build_model(name).eval()
    assert model.size_multiple == 16
    with torch.no_grad():
        assert model(torch.rand(1, 3, 128, 128)).shape == (1, 3, 128, 128)
        assert model(torch.rand(1, 3, 16, 64)).shape == (1, 3, 16, 64)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_traced_module_matches_eager_at_two_sizes(name: str) -> None:
    model = random_network(name)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.rand(1, 3, 128, 128))
        for shape in ((1, 3, 128, 128), (3, 3, 96, 160)):
            x = torch.rand(shape)
            assert (traced(x) - model(x)).abs().max() < 1e-5


@pytest.mark.parametrize("name", sorted(MODELS))
def test_an_untrained_network_is_the_identity(name: str) -> None:
    model = build_model(name, **TINY).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), x)
        torch.nn.init.constant_(model.head.bias, 0.25)
        assert torch.allclose(model(x), x - 0.25)


def test_attention_variant_differs_only_by_cbam() -> None:
    plain = {k for k in build_model("model_runet").state_dict()}
    attended = {k for k in build_model("model_arunet").state_dict()}
    assert plain < attended
    assert all(".attention." in k for k in attended - plain)


def test_registry_names_and_archives_are_the_contract() -> None:
    assert {name: spec.archive for name, spec in MODELS.items()} == {
        "model_unet": "UNET", "model_runet": "R-UNET", "model_arunet": "A-R-UNET",
    }


def test_weights_round_trip_through_safetensors(tmp_path) -> None:
    model = build_model("model_arunet", **TINY)
    save_weights("model_arunet", model, {"config": TINY}, tmp_path)
    loaded = load_pretrained("model_arunet", tmp_path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_missing_weights_say_how_to_train(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="scripts.training.train --model model_unet"):
        load_pretrained("model_unet", tmp_path)


def test_channel_attention_is_the_shared_mlp_over_both_descriptors() -> None:
    attention = ChannelAttention(32).eval()
    x = torch.randn(4, 32, 16, 16)
    with torch.no_grad():
        mlp = attention.mlp
        expected = x * torch.sigmoid(mlp(x.mean(dim=(2, 3), keepdim=True)) + mlp(x.amax(dim=(2, 3), keepdim=True)))
        assert torch.equal(attention(x), expected)


@pytest.mark.parametrize("channels", [16, 24, 3, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_spatial_attention_is_the_convolution_over_the_mean_and_max_maps(channels: int, dtype: torch.dtype) -> None:
    attention = SpatialAttention(channels).eval().to(dtype)
    x = torch.randn(2, channels, 12, 12).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        maps = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        assert torch.equal(attention(x), x * torch.sigmoid(attention.conv(maps)))
