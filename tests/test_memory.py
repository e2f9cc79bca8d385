"""A worker's memory is bounded by the tile batch, not the image; oversize images are refused unread.

Measures one worker's peak RSS (model_unet, the session ``server``) while it denoises a 1, 4
and 16 megapixel photo, prints the figures, and checks the 16 MP peak stays under 3 GB.
"""
from __future__ import annotations

from typing import Any

import requests

from models.imaging import MAX_PIXELS
from scripts.memory_report import MIB, measure_sizes, reset_peak_rss, status_field
from tests.hostile_inputs import png_bomb

MODEL = "model_unet"
PEAK_LIMIT_MIB = 3 * 1024


def test_peak_rss_while_denoising_1_4_16_megapixels(server: Any) -> None:
    (pid,) = server.worker_pids(MODEL)
    samples = measure_sizes(server.inference_url, MODEL, pid, [1, 4, 16])
    for sample in samples:
        print(f"\n{sample.megapixels:>4} MP: peak RSS {sample.peak_mib:.0f} MiB "
              f"(before {sample.baseline_mib:.0f} MiB), {sample.seconds:.1f} s")
    assert [sample.status for sample in samples] == [200, 200, 200]
    assert samples[-1].peak_mib < PEAK_LIMIT_MIB


def test_image_over_the_pixel_limit_is_refused_before_decoding(server: Any) -> None:
    (pid,) = server.worker_pids(MODEL)
    side = int(MAX_PIXELS**0.5) + 1
    reset_peak_rss(pid)
    before = status_field(pid, "VmRSS")
    response = requests.post(f"{server.inference_url}/predictions/{MODEL}", data=png_bomb(side, side), timeout=120)
    assert response.status_code == 413
    assert "limit" in response.json()["message"]
    # Decoding would need 3 bytes per pixel (over 100 MiB); reading the header needs almost nothing.
    assert (status_field(pid, "VmHWM") - before) / MIB < 32
