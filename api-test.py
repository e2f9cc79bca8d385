"""Smoke-check a running Denoiser-Server: health, each model's quality gain, a refused bad body.

    python api-test.py                                   # http://127.0.0.1:8080
    python api-test.py --url https://OWNER-SPACE.hf.space
    python api-test.py --input photo.png --models model_unet

A clean photograph (``images/clean.png`` unless ``--input``) is degraded with the project's
hybrid noise model (``models.noise``, fixed seed) and sent as a PNG to every model. Each answer
must be a 200 PNG of the input's size whose PSNR against the clean photo is at least
``--min-gain`` dB above the noisy input's. A body that is no image must get a 4xx with a JSON
message. Prints a table; exits 1 if any check fails.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from models.noise import add_hybrid_noise

MODELS = ("model_unet", "model_runet", "model_arunet")
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_INPUT = Path(__file__).resolve().parent / "images" / "clean.png"
TIMEOUT_S = 300


@dataclass
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str


def psnr(clean: np.ndarray, other: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (data range 255)."""
    mse = np.mean((clean.astype(np.float64) - other.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 HxWx3 array as PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, content type and body (error statuses included)."""

    status: int
    content_type: str
    body: bytes

    def json(self) -> dict:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.body)


def fetch(url: str, data: bytes | None = None, timeout: float = 60) -> Answer:
    """GET ``url`` (or POST ``data`` as the raw body) with the standard library; OSError when unreachable."""
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/octet-stream"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.headers.get("Content-Type", ""), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers.get("Content-Type", ""), error.read())


def check_ping(url: str) -> Check:
    """``GET /ping`` answers 200 with status Healthy."""
    try:
        answer = fetch(f"{url}/ping", timeout=30)
        status = answer.json().get("status")
        return Check("ping", answer.status == 200 and status == "Healthy", f"{answer.status} {status}")
    except (OSError, ValueError) as error:
        return Check("ping", False, str(error)[:120])


def check_model(url: str, model: str, clean: np.ndarray, noisy: np.ndarray, min_gain: float) -> Check:
    """POST the noisy PNG to ``model``: a same-size PNG at least ``min_gain`` dB better than the input."""
    try:
        answer = fetch(f"{url}/predictions/{model}", png_bytes(noisy), TIMEOUT_S)
    except OSError as error:
        return Check(model, False, str(error)[:120])
    if answer.status != 200 or answer.content_type.split(";")[0] != "image/png":
        return Check(model, False, f"{answer.status} {answer.content_type}: {answer.body[:120].decode(errors='replace')}")
    result = np.asarray(Image.open(io.BytesIO(answer.body)).convert("RGB"))
    if result.shape != clean.shape:
        return Check(model, False, f"size {result.shape[1]}x{result.shape[0]}, sent {clean.shape[1]}x{clean.shape[0]}")
    before, after = psnr(clean, noisy), psnr(clean, result)
    gain = after - before
    return Check(model, gain >= min_gain, f"PSNR {before:.2f} -> {after:.2f} dB (+{gain:.2f}, need +{min_gain:g})")


def check_bad_body(url: str, model: str) -> Check:
    """A body that is no image gets a 4xx with a JSON message."""
    name = "not-an-image"
    try:
        answer = fetch(f"{url}/predictions/{model}", b"this is not an image", 60)
        message = answer.json().get("message", "")
    except OSError as error:
        return Check(name, False, str(error)[:120])
    except ValueError:
        return Check(name, False, f"{answer.status}, body is not JSON: {answer.body[:80].decode(errors='replace')}")
    return Check(name, 400 <= answer.status < 500 and bool(message), f"{answer.status} {message[:80]}")


def run_checks(url: str, clean: np.ndarray, models: list[str], min_gain: float, seed: int = 0) -> list[Check]:
    """Every check against the server at ``url``; the noisy input is drawn from ``seed``."""
    noisy, _ = add_hybrid_noise(clean, np.random.default_rng(seed))
    checks = [check_ping(url)]
    checks += [check_model(url, model, clean, noisy, min_gain) for model in models]
    checks.append(check_bad_body(url, models[0]))
    return checks


def report(checks: list[Check]) -> str:
    """The checks as an aligned text table."""
    width = max(len(check.name) for check in checks)
    return "\n".join(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}" for c in checks)


def main(argv: list[str] | None = None) -> int:
    """Command line: run the checks, print the table, return 0 only if all passed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL, help="inference API base URL")
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="a clean photograph")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--min-gain", type=float, default=3.0, help="required PSNR gain in dB")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    clean = np.asarray(Image.open(args.input).convert("RGB"))
    checks = run_checks(args.url.rstrip("/"), clean, args.models, args.min_gain, args.seed)
    print(report(checks))
    failed = sum(not check.ok for check in checks)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
