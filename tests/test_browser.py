"""The external frontend's path in a real browser: a page on one loopback origin POSTs an image to the
service (nginx in front of TorchServe) on another, through CORS, and draws the PNG it gets back
(headless Chromium via Playwright). The service's own page at / is tested in test_page.py."""
from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser

from scripts.serving.harness import Server, running_server
from tests.photos import synthetic_photo

PAGE = Path(__file__).parent / "frontend" / "index.html"
SCREENSHOT = "frontend-test.png"  # the README's images/frontend-test.png, saved into the screenshot_dir
INPUT_SIZE = (96, 64)  # width, height: not square, not a multiple of 16, small enough to be quick.
MODEL = "model_unet"
SCREENSHOT_VIEWPORT = {"width": 600, "height": 320}  # the page's content, without a wide empty margin


@dataclass
class Frontend:
    """A static site (the test page and its input image) served on one loopback origin."""

    origin: str
    httpd: http.server.ThreadingHTTPServer


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the test page and a noisy PNG input."""
    root = tmp_path_factory.mktemp("frontend")
    shutil.copy(PAGE, root / "index.html")
    Image.fromarray(synthetic_photo(*INPUT_SIZE, grain=25)).save(root / "input.png")  # a small noisy photograph
    return root


def serve_static(root: Path, host: str) -> Frontend:
    """Serve root over HTTP on a free port of 127.0.0.1, named host in the origin, in a daemon thread."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[assignment]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return Frontend(f"http://{host}:{httpd.server_address[1]}", httpd)


@pytest.fixture(scope="module")
def frontends(site: Path) -> Iterator[tuple[Frontend, Frontend]]:
    """Two origins for the same page: the configured frontend and a foreign one.

    Both listen on 127.0.0.1; "localhost" makes the second a different origin for the browser.
    """
    allowed, foreign = serve_static(site, "127.0.0.1"), serve_static(site, "localhost")
    yield allowed, foreign
    for frontend in (allowed, foreign):
        frontend.httpd.shutdown()
        frontend.httpd.server_close()


@pytest.fixture(scope="module")
def restricted_server(model_store: Path, frontends: tuple[Frontend, Frontend]) -> Iterator[Server]:
    """A service (one model) whose CORS configuration allows only the first frontend's origin."""
    allowed, _ = frontends
    with running_server(model_store, models=f"{MODEL}=UNET.mar", env={"TS_CORS_ALLOWED_ORIGIN": allowed.origin}) as server:
        yield server


def denoise_in_page(browser: Browser, frontend: Frontend, api: str, screenshot: Path | None = None) -> dict:
    """Open the page on frontend's origin, run its denoise() against api, return what it reports."""
    page = browser.new_page(viewport=SCREENSHOT_VIEWPORT)
    try:
        page.goto(f"{frontend.origin}/index.html")
        result = page.evaluate("([api, model]) => denoise(api, model, 'input.png')", [api, MODEL])
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        return result
    finally:
        page.close()


def preflight(api: str, origin: str) -> requests.Response:
    """The CORS preflight a browser sends before POSTing an image from origin."""
    return requests.options(
        f"{api}/predictions/{MODEL}",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
        timeout=30,
    )


@pytest.mark.timeout(600)
def test_page_draws_the_denoised_png_at_the_input_size(
    browser: Browser, frontends: tuple[Frontend, Frontend], server: Server, screenshot_dir: Path,
) -> None:
    """Cross-origin POST of raw image bytes from the page; the PNG decodes in an <img> at the input's size."""
    allowed, _ = frontends
    result = denoise_in_page(browser, allowed, server.inference_url, screenshot=screenshot_dir / SCREENSHOT)
    assert result == {"ok": True, "status": 200, "type": "image/png", "width": INPUT_SIZE[0], "height": INPUT_SIZE[1]}


def test_preflight_allows_the_page_to_post_images(frontends: tuple[Frontend, Frontend], server: Server) -> None:
    """OPTIONS with Origin and Access-Control-Request-Method is answered with a permissive CORS policy."""
    allowed, _ = frontends
    answer = preflight(server.inference_url, allowed.origin)
    assert answer.status_code < 400
    assert answer.headers["Access-Control-Allow-Origin"] in ("*", allowed.origin)
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    assert "content-type" in answer.headers["Access-Control-Allow-Headers"].lower()


@pytest.mark.timeout(600)
def test_restricted_origin_list_refuses_other_origins(browser: Browser, frontends: tuple[Frontend, Frontend], restricted_server: Server) -> None:
    """With the origin list narrowed to the frontend, the page works from there and is refused elsewhere."""
    allowed, foreign = frontends
    api = restricted_server.inference_url
    assert preflight(api, foreign.origin).headers.get("Access-Control-Allow-Origin") == allowed.origin
    refused = denoise_in_page(browser, foreign, api)
    assert refused["ok"] is False and "Failed to fetch" in refused["error"]
    accepted = denoise_in_page(browser, allowed, api)
    assert accepted["ok"] is True and (accepted["width"], accepted["height"]) == INPUT_SIZE


def fetch_error_in_page(browser: Browser, frontend: Frontend, url: str) -> dict:
    """From a page on frontend's origin, GET url and return the status and JSON the script could read."""
    page = browser.new_page()
    try:
        page.goto(f"{frontend.origin}/index.html")
        return page.evaluate(
            """async (url) => {
                 try { const r = await fetch(url); return { ok: true, status: r.status, body: await r.json() }; }
                 catch (error) { return { ok: false, error: String(error) }; }
               }""",
            url,
        )
    finally:
        page.close()


def test_the_fronts_own_errors_follow_the_same_origin_list(browser: Browser, frontends: tuple[Frontend, Frontend], restricted_server: Server) -> None:
    """nginx's JSON errors (here a 404) carry TorchServe's configured origin: the frontend reads them, others cannot."""
    allowed, foreign = frontends
    url = f"{restricted_server.inference_url}/no-such-path"
    read = fetch_error_in_page(browser, allowed, url)
    assert read["ok"] is True and read["status"] == 404 and read["body"]["code"] == 404, read
    refused = fetch_error_in_page(browser, foreign, url)
    assert refused["ok"] is False and "Failed to fetch" in refused["error"]
