#!/usr/bin/env bash
# Installs what serving needs, once: a Java runtime for TorchServe's frontend and nginx for the
# public front with its Lua module (Debian/Ubuntu's headless JRE, nginx and
# libnginx-mod-http-lua packages through apt-get when one is missing), g++ where apt-get can
# install it (optional: the workers compile their networks for this CPU with it,
# models/compiled.py) and the virtual environment .venv with requirements.txt (torch CPU build,
# TorchServe, PyYAML...). With --dev it adds requirements-dev.txt (the offline tools and the
# test tools). scripts/serving/supervisor.py runs nginx with its own configuration
# (nginx/nginx.conf.template), never the system's.
# Idempotent: each requirements file is installed again only when it (or what it includes)
# changes, recorded in a stamp inside the venv.
# Run by scripts/serve.sh and (with --dev) scripts/test.sh; PYTHON (default python3) makes the
# venv, VENV (default .venv) says where.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
case "${1:-}" in
    "") DEV=0 ;;
    --dev) DEV=1 ;;
    *) echo "usage: scripts/bootstrap.sh [--dev]" >&2; exit 2 ;;
esac

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# install_once STAMP FILE [INCLUDED...]: pip install -r FILE unless STAMP holds the digest of
# FILE and the files it includes.
install_once() {
    local stamp="$VENV/$1" file="$2" wanted
    wanted="$(cat "${@:2}" | sha256sum | cut -d' ' -f1)"
    if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
        echo "Installing $(basename "$file") into $VENV..."
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$file"
        echo "$wanted" > "$stamp"
    fi
}

missing=()
java -version >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
# The front's gate (nginx/gate.lua) runs in Debian's and Ubuntu's Lua module for nginx.
[[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]] || missing+=(libnginx-mod-http-lua)
# Optional: without a C++ compiler the workers serve their TorchScript graphs.
if ! command -v "${CXX:-g++}" >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    missing+=(g++)
fi
if ((${#missing[@]})); then
    if command -v apt-get >/dev/null 2>&1; then
        echo "Installing ${missing[*]} (TorchServe's Java frontend, the nginx front and its Lua module, a C++ compiler)..."
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "Denoiser-Server needs a Java runtime (11 or newer) and nginx: install ${missing[*]}." >&2
        exit 1
    fi
fi

[[ -x "$VENV/bin/python" ]] || "${PYTHON:-python3}" -m venv "$VENV"
install_once .requirements.sha256 "$ROOT/requirements.txt"
if ((DEV)); then
    install_once .requirements-dev.sha256 "$ROOT/requirements-dev.txt" "$ROOT/requirements.txt"
fi
