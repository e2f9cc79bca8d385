"""Behaviour unchanged: what the service answers for a fixed input at fp32 equals a committed reference.

The input is a 160x96 crop of ``images/clean.png`` with a fixed integer noise pattern (no random
generator, whose streams may change between numpy versions); it goes through the request
pipeline (``models.pipeline.denoise_bytes``, served tiling) with the fp32 graph of the committed
weights, on one thread. The digest covers the answer's mode, size and pixels rather than the
PNG's bytes, which the zlib inside Pillow may compress differently from one build to the next.
The U-Net and the Residual U-Net give the same pixels on every kernel path tried here (eager or
graph, one thread or two); the CBAM network's reductions do not, so it is left out.

After an intended change of the answers (new weights, a pipeline change), run this file; each
failure names the new digest: copy it into ``REFERENCE`` and say why in the commit.
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from models import load_pretrained
from models.graphs import trace_graphs
from models.pipeline import denoise_bytes
from models.settings import HandlerSettings
from scripts.paths import IMAGES_DIR

CROP = (200, 100, 360, 196)  # left, top, right, bottom of images/clean.png
# The U-Net's made with the committed weights of 3669773; the Residual U-Net's with its fine-tuned width-24 weights (2026-12-08).
REFERENCE = {
    "model_unet": "f5e88ae87f855cde777ef4c8146a08dd12e95c6d44c5b2565e6e750c3e86cb68",
    "model_runet": "1944e6b0dace0a9a281d3310f22f98d87074174564d4fc1d9f25b0079efad1c6",
}


def fixed_noisy_png() -> bytes:
    """The crop with a deterministic +-30 pattern added (clipped), as PNG bytes."""
    clean = np.asarray(Image.open(IMAGES_DIR / "clean.png").convert("RGB").crop(CROP)).astype(np.int32)
    pattern = (np.arange(clean.size, dtype=np.int64).reshape(clean.shape) * 7919 % 61 - 30).astype(np.int32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(clean + pattern, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def answer_digest(png: bytes) -> str:
    """SHA-256 of a PNG answer's mode, size and pixels."""
    with Image.open(io.BytesIO(png)) as image:
        header = f"{image.mode} {image.width}x{image.height}".encode()
        return hashlib.sha256(header + image.tobytes()).hexdigest()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one intra-op thread for the test, restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_the_fp32_answer_for_a_fixed_input_is_the_reference(name: str, one_thread: None) -> None:
    graph = trace_graphs(load_pretrained(name))["fp32"]
    answer = denoise_bytes(graph, fixed_noisy_png(), HandlerSettings().tiles)
    assert answer.tiles > 1  # the tiles' blending is part of what is pinned
    assert answer_digest(answer.png) == REFERENCE[name], f"{name}: the answer changed; its digest is now {answer_digest(answer.png)}"
