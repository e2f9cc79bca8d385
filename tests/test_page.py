"""The page at / (``web/``) in headless Chromium, served by the real front of the session ``server``:
pick or drop an image, choose a model, compare input and result with the slider, download the PNG,
and read the server's message when a file is refused. The first test saves ``page.png`` (the README's
``images/page.png``) into the ``screenshot_dir`` (``--screenshots``, docs/testing.md).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from models import MODELS
from models.noise import add_hybrid_noise
from scripts.paths import IMAGES_DIR
from scripts.serving.front import WEB_ROOT
from scripts.serving.harness import Server

SCREENSHOT = "page.png"
VIEWPORT = {"width": 760, "height": 640}
CROP = (60, 40, 540, 360)  # a 480x320 piece of images/clean.png: small enough to denoise in about a second
PAGE_BYTES_LIMIT = 16_000  # index.html, app.js and style.css together
SCREENSHOT_COLOURS = 256  # the README's screenshot is stored with an adaptive palette (a third of the size)


@pytest.fixture(scope="module")
def noisy_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's photo (scikit-image's coffee) cropped and degraded with the hybrid noise model, as PNG."""
    clean = np.asarray(Image.open(IMAGES_DIR / "clean.png").convert("RGB").crop(CROP))
    noisy, _ = add_hybrid_noise(clean, np.random.default_rng(0))
    path = tmp_path_factory.mktemp("page") / "coffee-noisy.png"
    Image.fromarray(noisy).save(path)
    return path


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """The page at the front's /, with every URL it requested recorded in ``page.requested``."""
    opened = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
    opened.requested = []
    opened.on("request", lambda request: opened.requested.append(request.url))
    opened.goto(f"{server.inference_url}/")
    yield opened
    opened.close()


def wait_for_result(page: Any) -> None:
    """Until the download link appears (the PNG arrived and decoded) or an error is shown."""
    page.wait_for_selector("#download:not([hidden]), #error:not([hidden])", timeout=300_000)


def test_page_denoises_a_picked_photo_and_offers_the_png(page: Any, server: Server, noisy_photo: Path, screenshot_dir: Path) -> None:
    page.select_option("#model", "model_unet")
    page.set_input_files("#file", str(noisy_photo))
    wait_for_result(page)
    assert page.is_hidden("#error"), page.text_content("#error")
    width, height = Image.open(noisy_photo).size
    drawn = page.evaluate("""() => {
        const box = (id) => document.getElementById(id).getBoundingClientRect();
        const result = document.getElementById("result");
        return { natural: [result.naturalWidth, result.naturalHeight],
                 input: [box("input").width, box("input").height], result: [box("result").width, box("result").height] };
    }""")
    assert drawn["natural"] == [width, height]
    assert drawn["result"] == drawn["input"], drawn  # drawn over the input, at the same size
    status = page.text_content("#status")
    assert re.search(rf"U-Net: {width} × {height} px in \d+\.\d\d s, [\d.]+ kB PNG from [\d.]+ kB", status), status

    page.fill("#slider", "20")
    assert page.evaluate("getComputedStyle(document.getElementById('result')).clipPath") == "inset(0px 0px 0px 20%)"
    page.fill("#slider", "50")
    page.evaluate("document.activeElement.blur()")
    screenshot = screenshot_dir / SCREENSHOT
    page.screenshot(path=str(screenshot), full_page=True)
    Image.open(screenshot).convert("RGB").quantize(SCREENSHOT_COLOURS).save(screenshot, optimize=True)
    assert Image.open(screenshot).width == VIEWPORT["width"]

    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "coffee-noisy-denoised.png"
    with Image.open(download.value.path()) as png:
        assert (png.format, png.size) == ("PNG", (width, height))
    assert all(url.startswith((server.inference_url, "blob:", "data:")) for url in page.requested), page.requested


def test_a_dropped_image_and_another_model(page: Any, noisy_photo: Path) -> None:
    """Dropping a file runs it; choosing another model runs it again with that model."""
    page.evaluate("""async (bytes) => {
        const file = new File([new Uint8Array(bytes)], "dropped.png", { type: "image/png" });
        const transfer = new DataTransfer();
        transfer.items.add(file);
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", list(noisy_photo.read_bytes()))
    wait_for_result(page)
    assert page.text_content("#status").startswith("Residual U-Net: ")
    assert page.text_content("#role") == MODELS["model_runet"].role
    page.select_option("#model", "model_arunet")
    assert page.text_content("#role") == MODELS["model_arunet"].role
    # A selector, not wait_for_function: the page's Content-Security-Policy forbids eval, which that uses.
    page.wait_for_selector("#status:has-text('Residual U-Net + CBAM: ')", timeout=300_000)
    assert page.is_hidden("#error")


def test_a_refused_file_shows_the_servers_message(page: Any, server: Server, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("a shopping list, not a photograph\n")
    expected = requests.post(f"{server.inference_url}/predictions/model_runet", data=notes.read_bytes(), timeout=60)
    assert expected.status_code == 415
    page.set_input_files("#file", str(notes))
    wait_for_result(page)
    assert page.is_visible("#error") and page.is_hidden("#download")
    assert page.text_content("#error") == f"415: {expected.json()['message']}"


def test_page_offers_the_served_models_and_stays_small() -> None:
    html = (WEB_ROOT / "index.html").read_text()
    options = {name: (title, role) for name, role, title in
               re.findall(r'<option value="(\w+)" data-role="([^"]+)"[^>]*>([^<]+)</option>', html)}
    assert options == {name: (spec.title, spec.role) for name, spec in MODELS.items()}
    files = sorted(WEB_ROOT.iterdir())
    assert [path.name for path in files] == ["app.js", "index.html", "style.css"]
    assert sum(path.stat().st_size for path in files) < PAGE_BYTES_LIMIT
    # No external resource: no absolute URL, protocol-relative URL or @import anywhere.
    for path in files:
        assert not re.search(r"https?://|\"//|'//|@import|url\(", path.read_text()), path.name
