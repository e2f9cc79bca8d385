#!/usr/bin/env bash
# Start Denoiser-Server: install what is missing, build model_store/*.mar from the committed
# weights when they are out of date, then run TorchServe in the foreground with
# config.properties (inference on :8080). Ctrl-C or SIGTERM stops it cleanly.
# Addresses and other settings can be overridden from the environment, e.g.
#   TS_INFERENCE_ADDRESS=http://127.0.0.1:9080 scripts/serve.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
.venv/bin/python -m scripts.build_model_store
exec .venv/bin/python -m scripts.server "$@"
