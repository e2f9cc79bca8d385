"""Generators of hostile and malformed request bodies, and what the server must answer to each.

Every case is a complete HTTP request against the public port (method, path or model, body,
headers, or no content type at all) plus its expected outcome: ``OK`` (a 200 PNG of a known
size), ``REJECT`` (a 4xx with a JSON message), or a specific status (413 for oversized bodies
and images, 400, 404, 405). Nothing here imports the server: the cases are plain bytes built with Pillow, ``struct``
and ``zlib``.
"""
from __future__ import annotations

import io
import json
import random
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

OK = "ok"
REJECT = "reject"


@dataclass(frozen=True)
class HostileCase:
    """One request and its expected outcome (``OK``, ``REJECT`` or an exact HTTP status)."""

    name: str
    body: bytes = b""
    content_type: str | None = "application/octet-stream"
    expect: str | int = REJECT
    size: tuple[int, int] | None = None
    method: str = "POST"
    model: str | None = None
    path: str | None = None
    files: dict[str, Any] | None = field(default=None, hash=False)
    form: dict[str, str] | None = field(default=None, hash=False)

    def url(self, base: str, default_model: str) -> str:
        """The request URL: ``path`` if set, else ``/predictions/<model or default_model>``."""
        return base + (self.path or f"/predictions/{self.model or default_model}")

    def request_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``requests.request`` besides method and URL (no label when ``content_type`` is None)."""
        if self.files is not None or self.form is not None:
            return {"files": self.files, "data": self.form}
        return {"data": self.body, "headers": {} if self.content_type is None else {"Content-Type": self.content_type}}


def noise_image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A deterministic random image of the given size and Pillow mode."""
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    return rgb if mode == "RGB" else rgb.convert(mode)


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    """Encode ``image`` with Pillow into ``fmt`` and return the bytes."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` RGB-8, followed by ``idat`` (tiny)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A few hundred bytes declaring a huge image: the first rows of zeros, deflated."""
    return png_header_only(width, height, zlib.compress(b"\x00" * (64 * (1 + 3 * width)), 9)[:300])


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small valid JPEG whose SOF0 marker is rewritten to declare ``width`` x ``height``."""
    data = bytearray(encode(noise_image(16, 16), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_with_size(width: int, height: int) -> bytes:
    """A small valid GIF whose logical screen and frame declare ``width`` x ``height``."""
    data = bytearray(encode(noise_image(8, 8, "P"), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    frame = data.index(b"\x2c")
    data[frame + 5:frame + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def png_strip(width: int) -> bytes:
    """A valid black PNG of ``width`` x 1 pixels (RGB-8), deflated to a few kB per million pixels."""
    return png_header_only(width, 1, zlib.compress(b"\x00" * (1 + 3 * width), 9))


def corrupt_png_data() -> bytes:
    """A PNG with a valid signature and IHDR, but an IDAT of garbage (CRC still correct)."""
    return png_header_only(64, 64, random.Random(1).randbytes(512))


def png_text_bomb() -> bytes:
    """A valid 32x32 PNG with a zTXt chunk that inflates to 64 MB."""
    valid = encode(noise_image(32, 32), "PNG")
    payload = b"Comment\x00\x00" + zlib.compress(b"A" * (64 << 20), 9)
    iend = valid.rindex(b"IEND") - 4
    return valid[:iend] + png_chunk(b"zTXt", payload) + valid[iend:]


def jpeg_with_corrupt_exif() -> bytes:
    """A valid 48x40 JPEG carrying an APP1 'Exif' segment full of garbage offsets."""
    data = encode(noise_image(48, 40), "JPEG")
    garbage = b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xf0" + random.Random(2).randbytes(200)
    app1 = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    return data[:2] + app1 + data[2:]


def jpeg_rotated_exif() -> bytes:
    """A valid 48x40 JPEG whose EXIF says 'rotate 90 degrees' (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(noise_image(48, 40), "JPEG", exif=exif.tobytes())


def animated_gif() -> bytes:
    """A three-frame 40x32 animated GIF."""
    frames = [noise_image(40, 32, "P", seed) for seed in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def multipage_tiff() -> bytes:
    """A three-page TIFF whose pages have different sizes (the first is 40x32)."""
    pages = [noise_image(40, 32), noise_image(20, 20, seed=1), noise_image(64, 8, seed=2)]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def png_16bit() -> bytes:
    """A 16-bit-per-sample grayscale 40x32 PNG using the full 0..65535 range."""
    ramp = np.linspace(0, 65535, 40 * 32).astype(np.uint16).reshape(32, 40)
    return encode(Image.fromarray(ramp), "PNG")


def png_16bit_rgb() -> bytes:
    """A 16-bit-per-channel RGB 24x16 PNG written by hand (Pillow cannot write RGB-16)."""
    width, height = 24, 16
    rows = np.random.default_rng(3).integers(0, 65536, (height, width * 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")


def multipart_image(field_name: str = "data") -> dict[str, Any]:
    """A multipart file field holding a valid 40x32 PNG."""
    return {field_name: ("photo.png", encode(noise_image(40, 32), "PNG"), "image/png")}


def hostile_cases(max_request_size: int) -> list[HostileCase]:
    """All hostile and malformed requests, for a server whose body limit is ``max_request_size``."""
    png = encode(noise_image(40, 32), "PNG")
    jpeg = encode(noise_image(40, 32), "JPEG", quality=90)
    return [
        HostileCase("empty body", b""),
        HostileCase("plain text", b"hello, please denoise me\n", "text/plain"),
        HostileCase("html", b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", "text/html"),
        HostileCase("json body", json.dumps({"image": "aGVsbG8=", "model": "x"}).encode(), "application/json"),
        HostileCase("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "image/svg+xml"),
        HostileCase("pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "application/pdf"),
        HostileCase("random bytes", random.Random(0).randbytes(4096)),
        HostileCase("png signature only", b"\x89PNG\r\n\x1a\n", "image/png"),
        HostileCase("png cut in half", png[: len(png) // 2], "image/png"),
        HostileCase("jpeg cut in half", jpeg[: len(jpeg) // 2], "image/jpeg"),
        HostileCase("png valid header corrupt data", corrupt_png_data(), "image/png"),
        HostileCase("png zero width", png_header_only(0, 32), "image/png"),
        HostileCase("png decompression bomb 50000x50000", png_bomb(), "image/png"),
        HostileCase("png declaring 100000x200000", png_bomb(100_000, 200_000), "image/png"),
        HostileCase("jpeg declaring 65000x65000", jpeg_with_size(65_000, 65_000), "image/jpeg"),
        HostileCase("gif declaring 65535x65535", gif_with_size(65_535, 65_535), "image/gif"),
        HostileCase("png zTXt text bomb", png_text_bomb(), "image/png"),
        HostileCase("1x1 png", encode(noise_image(1, 1), "PNG"), "image/png", OK, (1, 1)),
        HostileCase("1x100000 png", encode(noise_image(100_000, 1), "PNG"), "image/png", expect=413),
        HostileCase("4000000x1 png within the pixel limit", png_strip(4_000_000), "image/png", expect=413),
        HostileCase("animated gif", animated_gif(), "image/gif", OK, (40, 32)),
        HostileCase("multi-page tiff", multipage_tiff(), "image/tiff", OK, (40, 32)),
        HostileCase("cmyk jpeg", encode(noise_image(40, 32, "CMYK"), "JPEG"), "image/jpeg", OK, (40, 32)),
        HostileCase("16-bit grayscale png", png_16bit(), "image/png", OK, (40, 32)),
        HostileCase("16-bit rgb png", png_16bit_rgb(), "image/png", OK, (24, 16)),
        HostileCase("rgba png", encode(noise_image(40, 32, "RGBA"), "PNG"), "image/png", OK, (40, 32)),
        HostileCase("palette png", encode(noise_image(40, 32, "P"), "PNG"), "image/png", OK, (40, 32)),
        HostileCase("grayscale png", encode(noise_image(40, 32, "L"), "PNG"), "image/png", OK, (40, 32)),
        HostileCase("1-bit png", encode(noise_image(40, 32, "1"), "PNG"), "image/png", OK, (40, 32)),
        HostileCase("webp", encode(noise_image(40, 32), "WEBP"), "image/webp", OK, (40, 32)),
        HostileCase("bmp", encode(noise_image(40, 32), "BMP"), "image/bmp", OK, (40, 32)),
        HostileCase("jpeg with corrupt exif", jpeg_with_corrupt_exif(), "image/jpeg", OK, (48, 40)),
        HostileCase("jpeg with exif rotation", jpeg_rotated_exif(), "image/jpeg", OK, (40, 48)),
        HostileCase("png sent as text/plain", png, "text/plain", OK, (40, 32)),
        # curl --data-binary and urllib label any body a form unless told otherwise.
        HostileCase("png with curl's default form label", png, "application/x-www-form-urlencoded", OK, (40, 32)),
        HostileCase("form-encoded text", b"image=hello&model=unet", "application/x-www-form-urlencoded"),
        HostileCase("png with no content type", png, None, OK, (40, 32)),
        HostileCase("png labelled json", png, "application/json", OK, (40, 32)),
        HostileCase("body over max_request_size (1 MiB over)", random.Random(3).randbytes(max_request_size + 2**20), expect=413),
        HostileCase("multipart form with no file", form={"comment": "no file here"}),
        HostileCase("multipart form with a file", files=multipart_image(), expect=OK, size=(40, 32)),
        HostileCase("unknown model name", png, "image/png", expect=404, model="model_does_not_exist"),
        # nginx decodes and normalises the path first: one that climbs above / is refused there.
        HostileCase("path traversal model name", png, "image/png", expect=400, model="..%2F..%2Fetc%2Fpasswd"),
        # TorchServe runs inference for any method on /predictions/<model>, so PUT gets the
        # same correct result as POST; a method the API does not route at all gets a 405.
        HostileCase("PUT instead of POST", png, "image/png", OK, (40, 32), method="PUT"),
        HostileCase("GET without a body", method="GET"),
        HostileCase("wrong http method on the API root", png, "image/png", expect=405, method="DELETE", path="/"),
        # Only /predictions/* and /ping reach TorchServe: its other APIs' paths are not served.
        HostileCase("management path on the public port", method="GET", path="/models", expect=404),
        HostileCase("metrics path on the public port", method="GET", path="/metrics", expect=404),
        HostileCase("openapi description on the public port", method="OPTIONS", path="/", expect=405),
    ]
