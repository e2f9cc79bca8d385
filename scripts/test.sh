#!/usr/bin/env bash
# Run the test suite: install what is missing (Java, .venv with requirements-dev.txt, and the
# container, browser and lint tools), then pytest over tests/ and print how long it all took.
#   scripts/test.sh                          # everything (what CI runs)
#   scripts/test.sh --fast                   # the unit tier: no server, browser or container
#   scripts/test.sh tests/test_handler.py -x # extra arguments go to pytest
# The tiers are pytest markers (pyproject.toml, docs/testing.md), e.g. -m "server and not browser".
# VENV (default .venv) names the virtual environment, as for scripts/bootstrap.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export VENV="${VENV:-$ROOT/.venv}"
args=("$@")
if [[ "${1:-}" == "--fast" ]]; then
    args=(-m unit "${@:2}")
fi
start=$SECONDS
scripts/bootstrap.sh --dev
PYTHON="$VENV/bin/python" scripts/dev/install_test_tools.sh
status=0
"$VENV/bin/python" -m pytest -q -rs --timeout=1800 --durations=10 "${args[@]}" || status=$?
elapsed=$((SECONDS - start))
printf 'scripts/test.sh: %dm%02ds in all, setup included (pytest exit status %d)\n' $((elapsed / 60)) $((elapsed % 60)) "$status"
exit "$status"
