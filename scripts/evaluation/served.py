"""What the evaluation tools and the tests share: the network the handler would serve, an image as the PNG
a user uploads, an image denoised exactly as the server answers it, and the scores of a result.

``served_network`` picks the graph by the handler's own rule (``models.graphs.serving_graph``, the
same cached precision decision), so a result here is the served answer, pixel for pixel.
"""
from __future__ import annotations

import dataclasses
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from models import WEIGHTS_DIR, load_pretrained
from models.compiled import save_program
from models.ensemble import ensembled
from models.graphs import serving_graph, trace_graphs
from models.pipeline import denoise_bytes
from models.precision import INT8, PrecisionChoice
from models.quantized import kept_program
from models.registry import graphs_id
from models.settings import HandlerSettings, serving_config
from models.tiling import Network, TileConfig
from scripts.evaluation.metrics import psnr

# The seed of the degradations (image ``i`` gets ``numpy.random.default_rng([seed, i])``) that
# evaluate and collage use unless told otherwise.
DEFAULT_SEED = 0


def served_settings(name: str, precision: str = "auto", ensemble: int | None = None) -> HandlerSettings:
    """The handler settings a worker of ``name`` reads (``models.settings.serving_config`` and the environment's
    overrides), at ``precision`` and, when given, ``ensemble`` instead of the model's own."""
    served = HandlerSettings.from_section(serving_config(name)["handler"])
    return dataclasses.replace(served, precision=precision, ensemble=served.ensemble if ensemble is None else ensemble)


def served_network(
    name: str, weights_dir: Path = WEIGHTS_DIR, precision: str = "auto", ensemble: int | None = None,
) -> tuple[Network, PrecisionChoice]:
    """The network the handler would serve for ``name`` on this machine (the same cached decision, the same
    self-ensemble), and the decision (``PrecisionChoice.served`` names it: ``fp32``, ``bf16``, ``aoti-fp32``,
    ``aoti-bf16`` or ``aoti-int8``).

    The settings are the model's archive settings (``models.settings.serving_config``) with the
    handler's environment overrides (``DENOISER_THREADS``, ``DENOISER_COMPILED``), at ``precision``
    and, when given, ``ensemble`` instead of the model's own. The exported programs are made as the
    archive makes them, and only when a package must be compiled; the int8 program is the one the
    archive packs (``models.quantized.kept_program``).
    """
    net = load_pretrained(name, weights_dir)
    settings = served_settings(name, precision, ensemble)
    shape = (settings.tile_batch, 3, settings.tile, settings.tile)
    identity = graphs_id(name, weights_dir)

    def program(asked: str, folder: Path) -> Path | None:
        return kept_program(name, weights_dir, identity)[0] if asked == INT8 else save_program(net, asked, folder, shape)

    with tempfile.TemporaryDirectory(prefix="denoiser-program-") as folder:
        graph, choice = serving_graph(trace_graphs(net), settings, identity, program=lambda asked: program(asked, Path(folder)))
    return ensembled(graph, settings.ensemble), choice


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 HxWx3 image as PNG bytes (what a user uploads)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def denoise_image(net: Network, noisy: np.ndarray, tiles: TileConfig = HandlerSettings().tiles) -> np.ndarray:
    """Denoise a uint8 HxWx3 image exactly as the server answers its PNG upload."""
    answer = denoise_bytes(net, png_bytes(noisy), tiles)
    with Image.open(io.BytesIO(answer.png)) as result:
        return np.asarray(result.convert("RGB"))


def score(clean: np.ndarray, result: np.ndarray) -> dict[str, float]:
    """PSNR (dB) and SSIM of a uint8 result against the clean image (data range 255)."""
    return {
        "psnr": psnr(clean, result),
        "ssim": float(structural_similarity(clean, result, data_range=255, channel_axis=2)),
    }
