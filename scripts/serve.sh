#!/usr/bin/env bash
# Start Denoiser-Server: install what is missing (Java, nginx, .venv), build model_store/*.mar
# from the committed weights when they are out of date, then run TorchServe on loopback with
# config.properties and, once every model is READY, nginx in front of it on :8080 (the page at
# /, the API at /predictions/<model> and /ping). Ctrl-C or SIGTERM stops both cleanly.
# Settings can be overridden from the environment, e.g.
#   DENOISER_LISTEN=127.0.0.1:9080 scripts/serve.sh             # the public address
#   TS_CORS_ALLOWED_ORIGIN=https://my-frontend.example scripts/serve.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
.venv/bin/python -m scripts.serving.archives
exec .venv/bin/python -m scripts.serving.supervisor "$@"
