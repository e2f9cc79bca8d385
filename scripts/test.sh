#!/usr/bin/env bash
# Run the whole test suite: install what is missing (Java, .venv with requirements-dev.txt, and the container, browser
# and lint tools), then pytest over tests/. Extra arguments go to pytest, e.g.
#   scripts/test.sh tests/test_handler.py -x
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh --dev
scripts/install_test_tools.sh
exec .venv/bin/python -m pytest -q -rs --timeout=1800 "${@:-tests}"
