"""Session fixtures: the model store built from the committed weights and one real TorchServe serving it.

Integration tests share one server (three workers) started on free loopback ports with the
project's ``config.properties``; tests that need a server of their own (other settings, killed
workers, restarts) start it from the same ``model_store``. The session may not read
``../shared`` (``tests/isolation.py``): what a test needs comes from the repository or from a
package in ``requirements.txt``.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models import MODELS, WEIGHTS_DIR, weight_paths
from scripts.build_model_store import build_store
from scripts.server import Server, running_server
from tests import isolation


def pytest_configure(config: pytest.Config) -> None:
    """Refuse reads under ``../shared`` for the whole session."""
    isolation.install()


def trained_weights_present() -> bool:
    """Whether every served model has committed weights."""
    return all(path.exists() for name in MODELS for path in weight_paths(name, WEIGHTS_DIR))


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``UNET.mar``, ``R-UNET.mar`` and ``A-R-UNET.mar`` freshly built from ``models/weights``."""
    if not trained_weights_present():
        pytest.fail(f"trained weights missing under {WEIGHTS_DIR}: see README, 'Training'")
    store = tmp_path_factory.mktemp("model_store")
    build_store(store)
    return store


@pytest.fixture(scope="session")
def server(model_store: Path) -> Iterator[Server]:
    """One TorchServe serving the three archives on free 127.0.0.1 ports, stopped after the session."""
    with running_server(model_store) as running:
        yield running
