"""A worker's memory is bounded by the tile batch, not the image; oversize images are refused unread.

Measures one worker's peak RSS (model_unet, the session ``server``, asked directly rather than
through the front, which would send these sizes to the endpoint's other pools) while it denoises
a 0.5 and a 2 megapixel photo and checks what each further megapixel costs: only the decoded
samples, the answer's integer pixels and the PNG encoder's buffers (tiles are read and blended in
bands), little enough that the largest accepted image (40 MP) stays under 1.2 GiB, which a real
40 MP request then checks. The 1/4/16/40 MP figures come from ``python -m scripts.evaluation.memory_report``.
"""
from __future__ import annotations

from typing import Any

import pytest
import requests

from models.imaging import MAX_PIXELS
from scripts.evaluation.memory_report import MIB, measure_sizes, reset_peak_rss, status_field
from tests.hostile_inputs import png_bomb

MODEL = "model_unet"
PEAK_LIMIT_MIB = 1.2 * 1024
# Per megapixel: the decoded 8-bit samples and the answer's (3 MiB each), Pillow's copies while
# decoding and encoding (4 MiB each, RGB padded to 4 bytes) and the PNG bytes; a float32 copy of
# the image would be 12 MiB, one U-Net pass over the whole image about 460 MiB.
MIB_PER_MEGAPIXEL_LIMIT = 24
SMALL_MP, LARGE_MP, TARGET_MP = 0.5, 2.0, MAX_PIXELS / 1e6


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


@pytest.mark.slow
def test_the_largest_accepted_image_is_answered_within_the_memory_limit(server: Any) -> None:
    (pid,) = server.worker_pids(MODEL)
    (sample,) = measure_sizes(server.torchserve_url, MODEL, pid, [TARGET_MP * 0.99])
    print(f"\npeak RSS {sample.peak_mib:.0f} MiB at {sample.megapixels:.1f} MP in {sample.seconds:.0f} s")
    assert sample.status == 200
    assert sample.peak_mib < PEAK_LIMIT_MIB


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
