"""TorchServe handler: image bytes in, denoised PNG out, one answer per request of a batch.

The only serving-specific file: the request pipeline is ``models.pipeline.denoise_bytes``.
This file reads the settings, loads the archive's fp32 and bf16 TorchScript graphs once per
worker, serves the one this machine's decision picks (``models.graphs.serving_graph``, which may
compile the archive's exported program for this CPU instead) as the model's self-ensemble
(``models.ensemble``, ``handler.ensemble``: one call per tile batch by default), and maps
each request (raw body or multipart form) to a PNG or to a JSON error with its own HTTP
status, so one bad upload never fails the rest of its batch. A JSON body in KServe's v1 or v2
shape (``models.protocols``) gets base64 PNGs in the matching JSON answer, on any of
TorchServe's inference paths; under TorchServe's ``kserve``/``kservev2`` envelope the rows are
that request's instances or inputs, and a refusal is TorchServe's error with the same status
and message.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

from models import protocols
from models.compiled import PROGRAM_FILES
from models.ensemble import ensembled
from models.graphs import GRAPH_FILES, ProgramSource, read_identity, serving_graph
from models.imaging import ImageError
from models.pipeline import Denoised, denoise_bytes
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


def archive_programs(model_dir: str) -> ProgramSource:
    """The exported program of a precision in the archive (``models.compiled.PROGRAM_FILES``), ``None`` where it has none."""

    def program(precision: str) -> Path | None:
        path = Path(model_dir) / PROGRAM_FILES[precision]
        return path if path.exists() else None

    return program


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
    pools for larger images, ``scripts.serving.front.POOLS``). Every thread of the process is lowered, and
    threads started later (OpenMP's) inherit it.
    """
    if context.model_name == context.manifest["model"]["modelName"] or nice <= 0:
        return False
    for thread in os.listdir("/proc/self/task"):
        os.setpriority(os.PRIO_PROCESS, int(thread), os.getpriority(os.PRIO_PROCESS, int(thread)) + nice)
    return True


def is_request_row(context: Any, idx: int, row: Any) -> bool:
    """Whether ``row`` is request ``idx`` as TorchServe passes it (its keys are that request's parameters).

    Under a service envelope the rows are what the envelope unwrapped from one request instead:
    v1 instances or v2 input tensors, whose keys are no parameters of the request.
    """
    if not isinstance(row, dict) or idx >= len(context.request_processor or []):
        return False
    return all(isinstance(context.get_request_header(idx, key), dict) for key in row)


def refusal(error: Exception, what: str) -> tuple[int, str]:
    """The HTTP status and message ``what`` (a request's name in the log) is answered with after ``error``, logged."""
    if isinstance(error, ImageError):
        logger.info("%s refused (%d): %s", what, error.status, error.message)
        return error.status, error.message
    logger.error("%s failed", what, exc_info=error)
    if isinstance(error, MemoryError):
        return 507, "not enough memory for this image: send a smaller one"
    return 500, "the denoiser failed on this image"


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
        graph, self.choice = serving_graph(graphs, self.settings, read_identity(model_dir), self.device,
                                           archive_programs(model_dir))
        self.model = ensembled(graph, self.settings.ensemble)
        logger.info(
            "denoiser %s (registered as %s) on %s (%s) with %d threads serves %s, ensemble of %d, %s",
            self.manifest["model"]["modelName"], context.model_name, self.device, cpu_name(), torch.get_num_threads(),
            self.choice.describe(), self.settings.ensemble, self.settings,
        )
        self.initialized = True

    def denoise(self, data: bytes, max_pixels: int) -> Denoised:
        """One image through the pipeline with this worker's graph, tiling and device."""
        return denoise_bytes(self.model, data, self.tiles, max_pixels, self.device)

    def denoise_request(self, request: protocols.ProtocolRequest) -> list[Denoised]:
        """Every image of a v1/v2 request, within the request's shared pixel limit."""
        return protocols.denoise_all(request.uploads, self.denoise, lambda done: done.decoded.width * done.decoded.height,
                                     self.settings.max_pixels)

    def record(self, idx: int, context: Any, results: list[Denoised]) -> None:
        """Request ``idx``'s custom metrics, summed over its images."""
        metrics = context.metrics
        metrics.add_metric("InputMegapixels", round(sum(done.decoded.megapixels for done in results), 3), "MP", idx=idx,
                           metric_type=MetricTypes.GAUGE)
        metrics.add_counter("TilesProcessed", sum(done.tiles for done in results), idx=idx)
        metrics.add_time("DenoiseTime", round(sum(done.seconds["total"] for done in results) * 1000, 2), idx=idx)

    def answer(self, idx: int, request: dict[str, Any], context: Any) -> bytes:
        """The PNG for request ``idx`` of the batch (or, for a v1/v2 JSON body, its JSON answer), recording its metrics."""
        content_types = part_content_types(context, idx, request)
        body = protocols.json_body(request, content_types)
        if body is not None:
            parsed = protocols.parse_body(body)
            results = self.denoise_request(parsed)
            self.record(idx, context, results)
            model = self.manifest["model"]
            answer = protocols.response(parsed, [done.png for done in results], model["modelName"],
                                        model.get("modelVersion"), context.get_request_id(idx))
            context.set_response_content_type(idx, JSON)
            return json.dumps(answer).encode("utf-8")
        result = self.denoise(upload_bytes(request, content_types), self.settings.max_pixels)
        self.record(idx, context, [result])
        context.set_response_content_type(idx, PNG)
        return result.png

    def answer_enveloped(self, rows: list[Any] | None, context: Any) -> list[Any]:
        """The items a ``kserve``/``kservev2`` envelope wraps into the answer to its one request.

        A refusal raises TorchServe's ``PredictionException``, which answers with the status and
        message (the envelope would wrap any item returned into a success-shaped body).
        """
        try:
            parsed = protocols.parse_enveloped(rows)
            results = self.denoise_request(parsed)
        except Exception as error:  # noqa: BLE001 - answered with the handler's status, not TorchServe's 503
            status, message = refusal(error, "request")
            raise PredictionException(message, status) from None
        self.record(0, context, results)
        context.set_response_content_type(0, JSON)
        return protocols.enveloped_outputs(parsed, [done.png for done in results])

    def failure(self, idx: int, context: Any, status: int, message: str) -> bytes:
        """Give request ``idx`` its own HTTP status and a JSON error body."""
        context.set_response_status(status, REASONS.get(status, "Error"), idx=idx)
        context.set_response_content_type(idx, JSON)
        return error_body(status, message)

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        """Answer every request of the batch independently: a PNG, or a JSON error with its own status."""
        self.context = context
        if not data or not all(is_request_row(context, idx, row) for idx, row in enumerate(data)):
            return self.answer_enveloped(data, context)
        responses = []
        for idx, request in enumerate(data):
            try:
                responses.append(self.answer(idx, request, context))
            except Exception as error:  # noqa: BLE001 - one broken request must not fail its batch
                responses.append(self.failure(idx, context, *refusal(error, f"request {idx}")))
        return responses
