"""A worker's memory is bounded by the tile batch, not the image; oversize images are refused unread.

Measures one worker's peak RSS (model_unet, the session ``server``, asked directly rather than
through the front, which would send these sizes to the endpoint's other pools) while it denoises a 0.5
and a 2 megapixel photo and checks what each further megapixel costs: only the image-sized
buffers (decoded, padded, blended and encoded copies), far below what a network pass over the
whole image would need, and little enough that a 16 MP photo stays under 3 GB. The 1/4/16 MP
figures themselves come from ``python -m scripts.memory_report`` (16 MP alone takes minutes).
"""
from __future__ import annotations

from typing import Any

import requests

from models.imaging import MAX_PIXELS
from scripts.memory_report import MIB, measure_sizes, reset_peak_rss, status_field
from tests.hostile_inputs import png_bomb

MODEL = "model_unet"
PEAK_LIMIT_MIB = 3 * 1024
# Per megapixel, the image-sized buffers (12 MiB per float32 RGB copy: decoded, padded, blended,
# plus weights and the PNG encoder's arrays) measured 40-60 MiB; one U-Net pass over the whole
# image instead of 128-pixel tiles measured about 460 MiB per MP.
MIB_PER_MEGAPIXEL_LIMIT = 128
SMALL_MP, LARGE_MP, TARGET_MP = 0.5, 2.0, 16.0


def test_peak_rss_grows_with_image_buffers_only(server: Any) -> None:
    (pid,) = server.worker_pids(MODEL)
    small, large = measure_sizes(server.torchserve_url, MODEL, pid, [SMALL_MP, LARGE_MP])
    per_mp = (large.peak_mib - small.peak_mib) / (LARGE_MP - SMALL_MP)
    projected = large.peak_mib + per_mp * (TARGET_MP - LARGE_MP)
    print(f"\npeak RSS {small.peak_mib:.0f} MiB at {SMALL_MP} MP, {large.peak_mib:.0f} MiB at {LARGE_MP} MP: "
          f"{per_mp:.0f} MiB per MP, {projected:.0f} MiB projected at {TARGET_MP:.0f} MP")
    assert (small.status, large.status) == (200, 200)
    assert per_mp < MIB_PER_MEGAPIXEL_LIMIT
    assert projected < PEAK_LIMIT_MIB


def test_image_over_the_pixel_limit_is_refused_before_decoding(server: Any) -> None:
    (pid,) = server.worker_pids(MODEL)
    side = int(MAX_PIXELS**0.5) + 1
    reset_peak_rss(pid)
    before = status_field(pid, "VmRSS")
    response = requests.post(f"{server.torchserve_url}/predictions/{MODEL}", data=png_bomb(side, side), timeout=120)
    assert response.status_code == 413
    assert "limit" in response.json()["message"]
    # Decoding would need 3 bytes per pixel (over 100 MiB); reading the header needs almost nothing.
    assert (status_field(pid, "VmHWM") - before) / MIB < 32
