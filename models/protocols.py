"""KServe's two REST inference protocols for images: base64 image files in, base64 PNGs out.

Plain Python, like the rest of ``models/``: ``handler.py`` hands this module what TorchServe
gives it and sends back what it returns. Two request shapes are understood:

* **v1** (KServe's V1 protocol, TensorFlow Serving's ``instances`` form):
  ``{"instances": [{"data": "<base64 image file>"}, {"b64": "<base64 image file>"}]}``,
  answered ``{"predictions": [{"b64": "<base64 PNG>"}, ...]}`` in the same order;
* **v2** (the Open Inference Protocol): one BYTES tensor of shape ``[1]`` per image,
  ``{"id": "...", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
  "data": ["<base64 image file>"]}]}``, answered ``{"id", "model_name", "model_version",
  "outputs": [{"name": <the input's name>, "datatype": "BYTES", "shape": [1],
  "data": ["<base64 PNG>"]}]}``.

Both reach the handler in one of two forms. Without a service envelope (this project's own
image and front) the handler gets the whole JSON body and ``parse_body`` reads it. Under
TorchServe's ``kserve`` or ``kservev2`` envelope (``TS_SERVICE_ENVELOPE``, what KServe's
TorchServe runtime sets from the InferenceService's ``serviceEnvelope`` label) the envelope
has already unwrapped the body into its instances, or into the inputs with each tensor's
first element as ``data``, and wraps what the handler returns; ``parse_enveloped`` reads
those rows and ``enveloped_outputs`` gives the envelope the items it wraps into the same
responses as above.

The limits of a raw upload apply to the whole request: its images together may have at most
``max_pixels`` (so the answer, a third larger than the PNGs in base64, stays under TorchServe's
``max_response_size``), and at most ``MAX_IMAGES`` images come in one request. Every mistake
is an ``ImageError`` with its HTTP status and a message that names the image it is about.
"""
from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from .imaging import ImageError, format_megapixels

V1 = "v1"
V2 = "v2"
# Images in one request: each costs at least one tile batch, and all of them share one
# responseTimeout; the pixel limit bounds their total size on top of this.
MAX_IMAGES = 16
BYTES = "BYTES"
JSON_START = re.compile(rb"^\s*[{\[]")
WHITESPACE = re.compile(r"\s+")
DATA_URL = re.compile(r"^data:[\w.+/-]*;base64,", re.IGNORECASE)
V1_SHAPE = '{"instances": [{"data": "<base64 image file>"}]}'
V2_SHAPE = '{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["<base64 image file>"]}]}'

Result = TypeVar("Result")


class Upload(NamedTuple):
    """One image of a protocol request: the file's bytes, what errors call it, and its v2 input name."""

    label: str
    data: bytes
    name: str | None = None


class ProtocolRequest(NamedTuple):
    """A parsed v1 or v2 request: its protocol, its images in order, and its v2 ``id`` if it gave one."""

    protocol: str
    uploads: tuple[Upload, ...]
    request_id: str | None = None


def looks_like_json(data: bytes) -> bool:
    """Whether ``data`` starts like a JSON object or array (no image file does)."""
    return bool(JSON_START.match(data[:64]))


def json_body(request: dict[str, Any], content_types: dict[str, str]) -> Any:
    """A TorchServe request's JSON body (TorchServe decodes an ``application/json`` raw body), or None for an upload.

    ``request`` maps TorchServe's parameter names to values (the raw body is ``body``) and
    ``content_types`` each to its content type. A body labelled JSON that TorchServe could not
    decode but that starts like JSON is a 400; one that does not (an image file sent with the
    wrong label) is left to the upload path.
    """
    body = request.get("body")
    if isinstance(body, (dict, list)):
        return body
    labelled_json = content_types.get("body", "").startswith("application/json")
    if labelled_json and isinstance(body, (bytes, bytearray)) and looks_like_json(bytes(body)):
        raise ImageError(400, "the request body is labelled application/json but is not valid JSON")
    return None


def protocol_of(body: Any) -> str | None:
    """``"v1"`` or ``"v2"`` for a JSON body in either shape, else None."""
    if isinstance(body, dict):
        if "instances" in body:
            return V1
        if "inputs" in body:
            return V2
    return None


def not_a_protocol_error() -> ImageError:
    """The 415 for a JSON body that is in neither protocol's shape."""
    return ImageError(
        415,
        "the request body is JSON, not an image: send the image file's bytes, or base64 images as KServe v1 "
        f"{V1_SHAPE} or v2 {V2_SHAPE}",
    )


def decode_base64(text: Any, label: str) -> bytes:
    """The bytes of a base64 image (standard alphabet; whitespace and a ``data:...;base64,`` prefix allowed)."""
    if not isinstance(text, str):
        raise ImageError(400, f"{label} must be a base64 string, got {type(text).__name__}")
    text = DATA_URL.sub("", WHITESPACE.sub("", text), count=1)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(400, f"{label} is not valid base64: send the image file's bytes in standard base64") from None
    if not data:
        raise ImageError(400, f"{label} is empty: send the image file's bytes in base64")
    return data


def encode_base64(data: bytes) -> str:
    """``data`` in standard base64, as the answers carry it."""
    return base64.b64encode(data).decode("ascii")


def checked_count(items: Any, what: str, shape: str) -> list[Any]:
    """``items`` as a list of 1 to ``MAX_IMAGES`` entries, else the 400 or 413 saying why."""
    if not isinstance(items, list) or not items:
        raise ImageError(400, f"{what} must be a non-empty list: send {shape}")
    if len(items) > MAX_IMAGES:
        raise ImageError(413, f"{len(items)} {what} in one request; at most {MAX_IMAGES} are accepted: send the rest in another request")
    return items


def v1_uploads(instances: Any) -> tuple[Upload, ...]:
    """The images of a v1 request's ``instances``: each an object with a base64 ``data`` or ``b64``."""
    uploads = []
    for index, instance in enumerate(checked_count(instances, "instances", V1_SHAPE)):
        label = f"instances[{index}]"
        key = next((key for key in ("data", "b64") if isinstance(instance, dict) and key in instance), None)
        if key is None:
            raise ImageError(400, f"{label} must be an object with the base64 image in \"data\" or \"b64\": send {V1_SHAPE}")
        uploads.append(Upload(f"{label}.{key}", decode_base64(instance[key], f"{label}.{key}")))
    return tuple(uploads)


def v2_uploads(inputs: Any, enveloped: bool = False) -> tuple[Upload, ...]:
    """The images of a v2 request's ``inputs``: BYTES tensors of one element each, base64 image files.

    ``enveloped``: the rows come from TorchServe's ``kservev2`` envelope, which has already
    replaced each BYTES tensor's ``data`` list by its first element.
    """
    uploads = []
    for index, tensor in enumerate(checked_count(inputs, "inputs", V2_SHAPE)):
        if not isinstance(tensor, dict):
            raise ImageError(400, f"inputs[{index}] must be a tensor object: send {V2_SHAPE}")
        name = tensor.get("name")
        label = f"inputs[{index}] ({name!r})" if isinstance(name, str) else f"inputs[{index}]"
        if not isinstance(name, str) or not name:
            raise ImageError(400, f"{label} needs a \"name\": send {V2_SHAPE}")
        if tensor.get("datatype") != BYTES:
            raise ImageError(415, f"{label} has datatype {tensor.get('datatype')!r}: send the image file as a BYTES tensor, {V2_SHAPE}")
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(isinstance(side, int) for side in shape) or math.prod(shape) != 1:
            raise ImageError(400, f"{label} has shape {shape!r}: one image per tensor, shape [1] (send more images as more inputs)")
        data = tensor.get("data")
        if not enveloped:
            if not isinstance(data, list) or len(data) != 1:
                raise ImageError(400, f"{label} must hold its image as \"data\": [\"<base64 image file>\"]")
            data = data[0]
        uploads.append(Upload(label, decode_base64(data, label), name))
    return tuple(uploads)


def parse_body(body: Any) -> ProtocolRequest:
    """A whole v1 or v2 JSON body (no envelope) as its images; 415 for JSON in neither shape."""
    protocol = protocol_of(body)
    if protocol == V1:
        return ProtocolRequest(V1, v1_uploads(body["instances"]))
    if protocol == V2:
        request_id = body.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise ImageError(400, f"\"id\" must be a string, got {type(request_id).__name__}")
        return ProtocolRequest(V2, v2_uploads(body["inputs"]), request_id or None)
    raise not_a_protocol_error()


def is_v2_input(row: Any) -> bool:
    """Whether an enveloped row is a v2 input tensor (the ``kservev2`` envelope's rows) rather than a v1 instance."""
    return isinstance(row, dict) and "datatype" in row


def parse_enveloped(rows: Sequence[Any] | None) -> ProtocolRequest:
    """The rows a ``kserve`` (v1 instances) or ``kservev2`` (v2 inputs) envelope hands over, as one request's images."""
    if not rows:
        raise ImageError(400, f"no images in the request: send {V1_SHAPE} (KServe v1) or {V2_SHAPE} (v2)")
    if isinstance(rows, list) and all(is_v2_input(row) for row in rows):
        return ProtocolRequest(V2, v2_uploads(rows, enveloped=True))
    return ProtocolRequest(V1, v1_uploads(rows))


def denoise_all(
    uploads: Sequence[Upload], denoise: Callable[[bytes, int], Result], pixels: Callable[[Result], int], max_pixels: int,
) -> list[Result]:
    """``denoise(data, limit)`` each image in order, each within what the earlier ones left of ``max_pixels``.

    ``pixels`` gives a result's pixel count. An ``ImageError`` comes back with the image's label
    in front (and, for a 413 after the first image, what the earlier ones used).
    """
    results: list[Result] = []
    used = 0
    for upload in uploads:
        try:
            result = denoise(upload.data, max_pixels - used)
        except ImageError as error:
            note = ""
            if error.status == 413 and used:
                note = (f" (the {format_megapixels(max_pixels)} limit counts every image of one request together, and the "
                        f"images before this one have {format_megapixels(used)}: send this one in another request)")
            raise ImageError(error.status, f"{upload.label}: {error.message}{note}") from None
        used += pixels(result)
        results.append(result)
    return results


def v2_output(upload: Upload, png: bytes) -> dict[str, Any]:
    """One v2 output tensor: the PNG of ``upload`` in base64, named after its input (as the envelope names it)."""
    return {"name": upload.name, "datatype": BYTES, "shape": [1], "data": [encode_base64(png)]}


def response(request: ProtocolRequest, pngs: Sequence[bytes], model_name: str, model_version: str,
             default_id: str | None) -> dict[str, Any]:
    """The whole JSON answer to ``request`` (no envelope): v1 predictions or a v2 inference response."""
    if request.protocol == V1:
        return {"predictions": [{"b64": encode_base64(png)} for png in pngs]}
    return {
        "id": request.request_id or default_id,
        "model_name": model_name,
        "model_version": model_version,
        "outputs": [v2_output(upload, png) for upload, png in zip(request.uploads, pngs)],
    }


def enveloped_outputs(request: ProtocolRequest, pngs: Sequence[bytes]) -> list[Any]:
    """What the handler returns under an envelope, one item per row, for it to wrap into ``response``'s shape.

    ``kserve`` wraps the list as ``{"predictions": [...]}``; ``kservev2`` turns each base64 string
    into a BYTES output of shape [1] named after its input and adds the id, model name and version.
    """
    if request.protocol == V1:
        return [{"b64": encode_base64(png)} for png in pngs]
    return [encode_base64(png) for png in pngs]
