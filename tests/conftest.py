"""Session fixtures: the model store built from the committed weights, one real service serving it
(TorchServe behind the nginx front), and headless Chromium.

Integration tests share one server (three workers) started on free loopback ports with the
project's ``config.properties``; tests that need a server of their own (other settings, killed
workers, restarts) start it from the same ``model_store``. The session may not read
``../shared`` (``tests/isolation.py``): what a test needs comes from the repository or from a
package in ``requirements-dev.txt``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models import MODELS, WEIGHTS_DIR, weight_paths
from models.choice_cache import CACHE_ENV
from models.settings import COMPILED_ENV
from scripts.serving.archives import build_store
from scripts.serving.harness import Server, running_server
from tests import isolation

# Fixtures that put a test in a tier (pyproject.toml's markers): whatever uses them, directly or
# through another fixture, needs a running service or a browser.
FIXTURE_TIERS = {"model_store": "server", "server": "server", "browser": "browser"}
TIERS = ("server", "browser", "container", "slow")


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--screenshots DIR``: where the page and browser tests save their screenshots."""
    parser.addoption("--screenshots", type=Path, metavar="DIR",
                     help="save the page and browser tests' screenshots into DIR (images refreshes the README's); "
                          "default: a temporary folder")


def pytest_configure(config: pytest.Config) -> None:
    """Refuse reads under ``../shared`` for the whole session, and keep precision decisions in a
    session folder that every server started by a test inherits (``models.choice_cache``), so the
    workers, the evaluation and the tests serve and score the same graphs.

    Compiled candidates are off for the session (``DENOISER_COMPILED``): a package takes 20-40 s
    to build for each network, and most tests make networks of their own. The tests of compiling
    turn it back on (``tests/test_compiled.py``, ``tests/test_graphs.py``, the real start-up test
    in ``tests/test_server.py``), and the container test serves with it on.
    """
    isolation.install()
    os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="denoiser-cache-")
    os.environ[COMPILED_ENV] = "off"


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's decision folder."""
    shutil.rmtree(os.environ.pop(CACHE_ENV, ""), ignore_errors=True)
    os.environ.pop(COMPILED_ENV, None)


def item_tiers(item: pytest.Item) -> set[str]:
    """The tiers of a collected test: from the fixtures it uses and the tier markers it carries."""
    fixtures = set(getattr(item, "fixturenames", ()))
    tiers = {tier for fixture, tier in FIXTURE_TIERS.items() if fixture in fixtures}
    return tiers | {marker.name for marker in item.iter_markers() if marker.name in TIERS}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tiers; a test in none of them is ``unit``."""
    for item in items:
        tiers = item_tiers(item)
        for tier in sorted(tiers) or ["unit"]:
            item.add_marker(tier)


def trained_weights_present() -> bool:
    """Whether every served model has committed weights."""
    return all(path.exists() for name in MODELS for path in weight_paths(name, WEIGHTS_DIR))


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``UNET.mar``, ``R-UNET.mar`` and ``A-R-UNET.mar`` freshly built from ``models/weights``."""
    if not trained_weights_present():
        pytest.fail(f"trained weights missing under {WEIGHTS_DIR}: see docs/training.md")
    store = tmp_path_factory.mktemp("model_store")
    build_store(store)
    return store


@pytest.fixture(scope="session")
def server(model_store: Path) -> Iterator[Server]:
    """One TorchServe serving the three archives on free 127.0.0.1 ports, stopped after the session."""
    with running_server(model_store) as running:
        yield running


@pytest.fixture(scope="session")
def screenshot_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder for screenshots: ``--screenshots DIR`` (relative to where pytest was started), else a temporary one."""
    chosen = request.config.getoption("screenshots")
    if chosen is None:
        return tmp_path_factory.mktemp("screenshots")
    folder = request.config.invocation_params.dir / chosen
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# Debian's chromium package; GitHub's Ubuntu runners have Google Chrome instead (Ubuntu ships Chromium as a snap).
BROWSERS = (Path("/usr/bin/chromium"), Path("/usr/bin/google-chrome"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (no downloaded browser); a playwright ``Browser``."""
    from playwright.sync_api import sync_playwright  # installed by scripts/dev/install_test_tools.sh

    executable = next((path for path in BROWSERS if path.is_file()), None)
    if executable is None:
        pytest.fail(f"{BROWSERS[0]} missing: run scripts/dev/install_test_tools.sh")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
