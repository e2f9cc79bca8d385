# Denoiser-Server image for a CPU Hugging Face Space (Docker SDK, port 8080, uid 1000).
# Two stages: "runtime" (Java, nginx and the pinned requirements) changes only with
# requirements.txt; the last stage adds the project and builds the model store.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE} AS runtime

# pip settings for builds behind a TLS-intercepting proxy (PIP_CERT: CA bundle path) or
# from a local wheel folder (PIP_FIND_LINKS); unset by default. The PyTorch CPU index
# supplies the CPU-only torch wheel.
ARG PIP_CERT
ARG PIP_FIND_LINKS
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/user \
    TEMP=/home/user/tmp

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# TorchServe's frontend is a Java application: a headless JRE is enough. nginx is the public
# front (scripts/serving/front.py renders its configuration; it runs as uid 1000 like everything
# else), with Debian's Lua module for its gate (nginx/gate.lua: pixel budget and pools).
# g++ lets each worker compile its network for the CPU it runs on (models/compiled.py: an
# AOTInductor package, timed against TorchScript and served only where clearly faster); the
# Space's CPU is unknown when the image is built, so nothing is compiled here.
# None is version-pinned on purpose: Debian stable only ships security fixes for
# them, and an exact pin would break the build at the next point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless nginx libnginx-mod-http-lua g++ \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --home-dir /home/user user \
    && mkdir -p /home/user/app "$TEMP" \
    && chown -R 1000:1000 /home/user

COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv "$VIRTUAL_ENV" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

FROM runtime
USER 1000
WORKDIR /home/user/app
COPY --chown=1000:1000 . .

# Model archives are built from the committed weights, inside the image.
RUN python -m scripts.serving.archives

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=8)"]

# scripts.serving.supervisor runs `torchserve --foreground` with config.properties and model_store/ on
# loopback, then nginx on 8080 (the page, /predictions/*, /ping); SIGTERM stops both cleanly,
# and if either dies the container exits, so it is restarted.
CMD ["python", "-m", "scripts.serving.supervisor"]
