"""The values nginx, TorchServe and the handler share agree, checked in one place: TorchServe's
``config.properties``, the nginx configuration rendered from it (``scripts/serving/front.py``) and the
archives' ``model-config.yaml`` (``models/settings.py``)."""
from __future__ import annotations

import re
from pathlib import Path

from models.imaging import MAX_PIXELS
from models.settings import SERVING_CONFIG
from scripts.paths import CONFIG
from scripts.serving.front import front_settings, host_port, read_properties, render


def directive(conf: str, name: str) -> str:
    """The value of the one ``name`` directive in a rendered nginx configuration."""
    found = re.findall(rf"^[ \t]*{name}[ \t]+([^;{{]+);", conf, flags=re.MULTILINE)
    assert len(found) == 1, f"{name}: {found}"
    return found[0].strip()


def seconds(value: str) -> int:
    """An nginx time in whole seconds ("900s" or "15m")."""
    number, unit = re.fullmatch(r"(\d+)([sm]?)", value).groups()
    return int(number) * (60 if unit == "m" else 1)


def test_nginx_torchserve_and_the_archives_agree(tmp_path: Path) -> None:
    properties = read_properties(CONFIG)
    conf = render(front_settings(CONFIG, tmp_path / "run", tmp_path, environ={}))
    # nginx proxies to TorchServe's inference address and takes the bodies TorchServe takes.
    assert directive(conf, "server") == host_port(properties["inference_address"])
    assert int(directive(conf, "client_max_body_size")) == int(properties["max_request_size"])
    # Workers and the response timeout: TorchServe's fallbacks are the archives' own values, and
    # nginx waits for an answer longer than TorchServe lets a worker take.
    assert int(properties["default_workers_per_model"]) == SERVING_CONFIG["minWorkers"] == SERVING_CONFIG["maxWorkers"]
    assert int(properties["default_response_timeout"]) == SERVING_CONFIG["responseTimeout"]
    assert seconds(directive(conf, "proxy_read_timeout")) > SERVING_CONFIG["responseTimeout"]
    # The handler's pixel limit is the one the archives carry, and its largest PNG fits a response.
    assert SERVING_CONFIG["handler"]["max_pixels"] == MAX_PIXELS
    assert int(properties["max_response_size"]) >= 4 * SERVING_CONFIG["handler"]["max_pixels"]
