#!/usr/bin/env bash
# Installs what serving and the offline tools need, once: a Java runtime for TorchServe's
# frontend and nginx with its Lua module for the public front (Debian/Ubuntu's headless JRE,
# nginx and libnginx-mod-http-lua packages through apt-get when one is missing) and the virtual environment .venv with
# requirements.txt (torch CPU build, TorchServe, PyYAML...). scripts/server.py runs nginx with
# its own configuration (nginx/nginx.conf.template), never the system's.
# Idempotent: the venv is reinstalled only when requirements.txt changes.
# Sourced by scripts/serve.sh and scripts/test.sh; PYTHON (default python3) makes the venv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
STAMP="$VENV/.requirements.sha256"

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

missing=()
java -version >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
# The front's gate (nginx/gate.lua) runs in Debian's and Ubuntu's Lua module for nginx.
[[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]] || missing+=(libnginx-mod-http-lua)
if ((${#missing[@]})); then
    if command -v apt-get >/dev/null 2>&1; then
        echo "Installing ${missing[*]} (TorchServe's Java frontend, the nginx front and its Lua module)..."
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "Denoiser-Server needs a Java runtime (11 or newer) and nginx: install ${missing[*]}." >&2
        exit 1
    fi
fi

wanted="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$STAMP" 2>/dev/null)" != "$wanted" ]]; then
    echo "Installing the Python environment in $VENV (requirements.txt)..."
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt"
    echo "$wanted" > "$STAMP"
fi
