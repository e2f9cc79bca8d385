"""The nginx front: its settings and its configuration, rendered from ``nginx/nginx.conf.template``.

nginx is the only public listener. It proxies ``/predictions/*`` and ``/ping`` to TorchServe on
loopback, serves the page in ``web/`` at ``/``, and answers its own errors (413, 429, 404...)
with the handler's JSON shape. Its values come from one place each:

- TorchServe's address, the body limit and the CORS origin from ``config.properties``, with the
  ``TS_*`` environment overrides TorchServe itself applies (``effective_properties``);
- the public address from ``DENOISER_LISTEN`` (default ``0.0.0.0:8080``);
- the per-client rate limit from ``RATE_PER_MINUTE`` and ``RATE_BURST`` below;
- the worker pools per endpoint (``POOLS``) and the per-client pixel budget (``PIXELS_PER_MINUTE``,
  ``PIXEL_BURST``) below, which ``nginx/gate.lua`` applies before a request reaches TorchServe.

This module only renders text and builds command lines; ``scripts/serving/processes.py`` starts the
processes (for the supervisor and the test harness).
"""
from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from scripts.paths import REPO

TEMPLATE = REPO / "nginx" / "nginx.conf.template"
WEB_ROOT = REPO / "web"
# Debian installs nginx in /usr/sbin, which a user's PATH may lack.
NGINX_SEARCH_PATH = os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/sbin"))
LISTEN_ENV = "DENOISER_LISTEN"
DEFAULT_LISTEN = "0.0.0.0:8080"
# Requests per client address on /predictions/: a sustained one every 3 seconds, and bursts of
# up to 10 at once (a person trying the three models on a few photos). A 1-megapixel image
# takes most of a second of the Space's 2 vCPUs, so a single client cannot hold the whole server.
RATE_PER_MINUTE = 20
RATE_BURST = 10
# Worker pools of every endpoint, by the pixels the front reads from the image's header
# (nginx/gate.lua): (name suffix, most pixels), smallest first; the last pool takes the rest and
# any body whose size the front cannot read. The first pool is the public model name; the
# others are hidden registrations of the same archive (scripts/serving/processes.py), which the front
# refuses to route to by name. A request waits only behind requests of its own pool, so a
# small photo keeps its latency while a large one is denoised (docs/fairness.md). Each pool is
# a worker (about 0.5 GiB idle): three pools of three endpoints are nine workers.
POOLS: tuple[tuple[str, int], ...] = (("", 500_000), ("-medium", 4_000_000), ("-large", 0))
# Pixels per client address a minute on /predictions/, counted from the image's header before
# any worker is involved: a token bucket of PIXEL_BURST that refills at PIXELS_PER_MINUTE. The
# burst is the largest accepted image (models.imaging.MAX_PIXELS, a test checks), so a full
# bucket always admits it; the rate is what RATE_PER_MINUTE's sizing assumed (twenty 1 MP
# photos), now counted in pixels. One request is charged at most PIXEL_BURST.
PIXELS_PER_MINUTE = 20_000_000
PIXEL_BURST = 40_000_000
# Where Debian's and Ubuntu's nginx keep their dynamic modules (libnginx-mod-http-lua and the
# development kit it needs).
NGINX_MODULES = Path("/usr/lib/nginx/modules")
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# Characters that would end or escape a value inside the rendered configuration.
UNSAFE_VALUE = re.compile(r"[\s\"';{}$\\]")


@dataclass(frozen=True)
class FrontSettings:
    """Everything the template needs: addresses, limits, folders."""

    listen: str
    upstream: str
    body_limit: int
    cors_origin: str
    run_dir: Path
    access_log: Path
    web_root: Path = WEB_ROOT
    rate_per_minute: int = RATE_PER_MINUTE
    rate_burst: int = RATE_BURST
    pools: tuple[tuple[str, int], ...] = POOLS
    pixels_per_minute: int = PIXELS_PER_MINUTE
    pixel_burst: int = PIXEL_BURST

    @property
    def url(self) -> str:
        """The front's base URL, as a client on this machine reaches it."""
        host, port = self.listen.rsplit(":", 1)
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '*') else host}:{port}"


def hidden_pool_suffixes(pools: tuple[tuple[str, int], ...] = POOLS) -> list[str]:
    """The name suffixes of every endpoint's hidden pools (all but the first, public one)."""
    return [suffix for suffix, _ in pools[1:]]


def read_properties(path: Path) -> dict[str, str]:
    """A Java properties file's ``key=value`` lines (comments and blank lines skipped)."""
    entries = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "!")):
            key, _, value = line.partition("=")
            entries[key.strip()] = value.strip()
    return entries


def effective_properties(config: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``config``'s settings as TorchServe applies them: ``TS_<KEY>`` variables override keys."""
    properties = read_properties(config)
    if properties.get("enable_envvars_config", "false").lower() == "true":
        properties.update({name[3:].lower(): value for name, value in environ.items() if name.startswith("TS_")})
    return properties


def host_port(url: str) -> str:
    """``host:port`` of an ``http://host:port`` address."""
    parsed = urlparse(url)
    if parsed.hostname is None or parsed.port is None:
        raise ValueError(f"an address with host and port is needed, got {url!r}")
    return f"{parsed.hostname}:{parsed.port}"


def front_settings(config: Path, run_dir: Path, log_dir: Path, environ: Mapping[str, str] = os.environ,
                   listen: str | None = None) -> FrontSettings:
    """The front's settings for TorchServe configured by ``config`` (and ``TS_*`` in ``environ``)."""
    properties = effective_properties(config, environ)
    return FrontSettings(
        listen=listen or environ.get(LISTEN_ENV, DEFAULT_LISTEN),
        upstream=host_port(properties["inference_address"]),
        body_limit=int(properties["max_request_size"]),
        cors_origin=properties.get("cors_allowed_origin", ""),
        run_dir=run_dir,
        access_log=log_dir / "nginx_access.log",
    )


def checked(name: str, value: object) -> str:
    """``value`` as text, refused if it could break out of its place in the configuration."""
    text = str(value)
    if UNSAFE_VALUE.search(text):
        raise ValueError(f"{name}={text!r} contains a character nginx's configuration cannot take")
    return text


def template_values(settings: FrontSettings) -> dict[str, str]:
    """The value of every placeholder of the template."""
    values = {
        "listen": settings.listen,
        "upstream": settings.upstream,
        "body_limit": settings.body_limit,
        "body_limit_mib": f"{settings.body_limit / 2**20:g}",
        "cors_origin": settings.cors_origin,
        "rate_per_minute": settings.rate_per_minute,
        "rate_burst": settings.rate_burst,
        "retry_after_s": math.ceil(60 / settings.rate_per_minute),
        "pools": "|".join(f"{suffix}={bound}" for suffix, bound in settings.pools),
        "pixels_per_minute": settings.pixels_per_minute,
        "pixel_budget_mp": f"{settings.pixels_per_minute / 1e6:g}",
        "pixel_burst": settings.pixel_burst,
        "nginx_modules": NGINX_MODULES,
        "gate_dir": TEMPLATE.parent,
        "run_dir": settings.run_dir,
        "access_log": settings.access_log,
        "web_root": settings.web_root,
    }
    # Started by root (a developer's machine, CI), nginx would run its worker as "nobody", which
    # cannot use the private temp folders: it runs as whoever starts it. A directive, not a value.
    user_directive = "user root;" if os.geteuid() == 0 else ""
    return {**{name: checked(name, value) for name, value in values.items()}, "user_directive": user_directive}


def render(settings: FrontSettings, template: Path = TEMPLATE) -> str:
    """The nginx configuration for ``settings``; every placeholder must have a value."""
    values = template_values(settings)
    text = template.read_text()
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise KeyError(f"no value for placeholders {missing} of {template}")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def write_config(settings: FrontSettings) -> Path:
    """Render the configuration into ``settings.run_dir`` (created if needed) and return its path."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    path = settings.run_dir / "nginx.conf"
    path.write_text(render(settings))
    return path


def nginx_binary() -> str:
    """The nginx executable (``scripts/bootstrap.sh`` installs Debian's package when it is missing)."""
    found = shutil.which("nginx", path=NGINX_SEARCH_PATH)
    if found is None:
        raise FileNotFoundError("nginx is not installed: run scripts/bootstrap.sh (or install nginx)")
    return found


def nginx_command(conf: Path) -> list[str]:
    """The command line that runs nginx in the foreground with ``conf`` (errors to stderr)."""
    return [nginx_binary(), "-e", "stderr", "-p", str(conf.parent), "-c", str(conf)]
