"""TorchServe handler: image bytes in, denoised PNG out, one answer per request of a batch.

The only serving-specific file: the request pipeline is ``models.pipeline.denoise_bytes``.
This file reads the settings, loads the archive's fp32 and bf16 TorchScript graphs once per
worker, serves the one this machine's decision picks (``models.graphs.serving_graph``), and maps
each request (raw body or multipart form) to a PNG or to a JSON error with its own HTTP
status, so one bad upload never fails the rest of its batch.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import torch
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

from models.graphs import GRAPH_FILES, read_identity, serving_graph
from models.imaging import ImageError
from models.pipeline import denoise_bytes
from models.precision import cpu_name
from models.settings import HandlerSettings

logger = logging.getLogger(__name__)

UPLOAD_FIELDS = ("data", "body", "file", "image")
PNG = "image/png"
JSON = "application/json"
REASONS = {
    400: "Bad Request",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    507: "Insufficient Storage",
}


def upload_bytes(request: dict[str, Any], content_types: dict[str, str]) -> bytes:
    """The image bytes of one request: the raw body, a form field named data/file/image, else the first file.

    ``content_types`` maps each field to its part's content type; TorchServe gives text form fields
    an empty one and file uploads a non-empty one, which is how a form without a file is told apart.
    """
    value = next((request[key] for key in UPLOAD_FIELDS if request.get(key) is not None), None)
    if value is None:
        value = next((item for key, item in request.items() if content_types.get(key)), None)
    if value is None:
        fields_sent = ", ".join(sorted(request)) or "none"
        raise ImageError(
            400,
            f"no image in the request (form fields: {fields_sent}): send the image file as the request body "
            "or as a file field named 'file'",
        )
    if isinstance(value, str):
        return value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray)):
        raise ImageError(415, "the request body is JSON, not an image: send the image file's bytes instead")
    return bytes(value)


def part_content_types(context: Any, idx: int, request: dict[str, Any]) -> dict[str, str]:
    """Each field's part content type as TorchServe records it in the request headers ('' when none)."""
    types = {}
    for name in request:
        header = context.get_request_header(idx, name)
        types[name] = (header.get("content-type") or "") if isinstance(header, dict) else ""
    return types


def lower_priority_if_hidden(context: Any, nice: int) -> bool:
    """Lower this worker's CPU priority by ``nice`` when it serves a hidden pool; whether it does.

    A hidden pool is the archive registered under another name than its manifest's (the front's
    pools for larger images, ``scripts.front.POOLS``). Every thread of the process is lowered, and
    threads started later (OpenMP's) inherit it.
    """
    if context.model_name == context.manifest["model"]["modelName"] or nice <= 0:
        return False
    for thread in os.listdir("/proc/self/task"):
        os.setpriority(os.PRIO_PROCESS, int(thread), os.getpriority(os.PRIO_PROCESS, int(thread)) + nice)
    return True


def error_body(status: int, message: str) -> bytes:
    """The JSON body answered for a failed request, shaped like TorchServe's own errors."""
    return json.dumps({"code": status, "type": REASONS.get(status, "Error"), "message": message}).encode("utf-8")


class DenoiserHandler(BaseHandler):
    """Denoise each uploaded photograph with the archive's TorchScript network, tile by tile."""

    def initialize(self, context: Any) -> None:
        """Load the graphs, take this machine's precision decision (made once, ``models.choice_cache``), warm up."""
        self.context = context
        self.manifest = context.manifest
        self.settings = HandlerSettings.from_context(context)
        self.hidden_pool = lower_priority_if_hidden(context, self.settings.hidden_pool_nice)
        torch.set_num_threads(self.settings.threads)
        properties = context.system_properties
        gpu_id = properties.get("gpu_id")
        use_cuda = torch.cuda.is_available() and gpu_id is not None
        self.device = torch.device(f"cuda:{gpu_id}" if use_cuda else "cpu")
        self.map_location = self.device.type
        model_dir = properties["model_dir"]
        graphs = {
            precision: torch.jit.load(path, map_location=self.device).eval()
            for precision, name in GRAPH_FILES.items()
            if os.path.exists(path := os.path.join(model_dir, name))
        }
        self.tiles = self.settings.tiles
        self.model, self.choice = serving_graph(graphs, self.settings, read_identity(model_dir), self.device)
        logger.info(
            "denoiser %s (registered as %s) on %s (%s) with %d threads serves %s, %s",
            self.manifest["model"]["modelName"], context.model_name, self.device, cpu_name(), torch.get_num_threads(),
            self.choice.describe(), self.settings,
        )
        self.initialized = True

    def answer(self, idx: int, request: dict[str, Any], context: Any) -> bytes:
        """The PNG for request ``idx`` of the batch, recording its metrics and content type."""
        data = upload_bytes(request, part_content_types(context, idx, request))
        result = denoise_bytes(self.model, data, self.tiles, self.settings.max_pixels, self.device)
        metrics = context.metrics
        metrics.add_metric("InputMegapixels", round(result.decoded.megapixels, 3), "MP", idx=idx,
                           metric_type=MetricTypes.GAUGE)
        metrics.add_counter("TilesProcessed", result.tiles, idx=idx)
        metrics.add_time("DenoiseTime", round(result.seconds["total"] * 1000, 2), idx=idx)
        context.set_response_content_type(idx, PNG)
        return result.png

    def failure(self, idx: int, context: Any, status: int, message: str) -> bytes:
        """Give request ``idx`` its own HTTP status and a JSON error body."""
        context.set_response_status(status, REASONS.get(status, "Error"), idx=idx)
        context.set_response_content_type(idx, JSON)
        return error_body(status, message)

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        """Answer every request of the batch independently: a PNG, or a JSON error with its own status."""
        self.context = context
        responses = []
        for idx, request in enumerate(data):
            try:
                responses.append(self.answer(idx, request, context))
            except ImageError as error:
                logger.info("request %d refused (%d): %s", idx, error.status, error.message)
                responses.append(self.failure(idx, context, error.status, error.message))
            except MemoryError:
                logger.exception("request %d ran out of memory", idx)
                responses.append(self.failure(idx, context, 507, "not enough memory for this image: send a smaller one"))
            except Exception:  # noqa: BLE001 - one broken request must not fail its batch
                logger.exception("request %d failed", idx)
                responses.append(self.failure(idx, context, 500, "the denoiser failed on this image"))
        return responses
