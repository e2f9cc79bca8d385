"""The Kubernetes manifests of ``deploy/kubernetes/``: rendered offline with ``kubectl kustomize`` and
checked with ``scripts.deploy.validate_manifests`` in the tool environment.

    python -m scripts.deploy.kube render [base|queue-autoscaling|kserve-v1|kserve-v2]   # YAML on stdout
    python -m scripts.deploy.kube validate                                            # every rendering, strictly

``kubectl`` is the one on ``PATH`` (kubectl bundles kustomize), else the one
``scripts/dev/install_test_tools.sh`` unpacks into the tool folder; the validators live in that
folder's ``k8s-venv`` (kubernetes-validate, kserve).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from scripts.paths import REPO

DEPLOY = REPO / "deploy" / "kubernetes"
RENDERINGS = {
    "base": DEPLOY / "base",
    "queue-autoscaling": DEPLOY / "overlays" / "queue-autoscaling",
    "kserve-v1": DEPLOY / "kserve" / "v1",
    "kserve-v2": DEPLOY / "kserve" / "v2",
}
TOOLS_DIR = Path(os.environ.get("TOOLS_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "denoiser-tools")
TOOL_KUBECTL = TOOLS_DIR / "kubectl" / "kubectl"
TOOL_PYTHON = TOOLS_DIR / "k8s-venv" / "bin" / "python"


def kubectl_binary() -> str | None:
    """kubectl on PATH, else the tool folder's, else None."""
    found = shutil.which("kubectl")
    if found:
        return found
    return str(TOOL_KUBECTL) if TOOL_KUBECTL.is_file() else None


def missing_tools() -> str | None:
    """Why the manifests cannot be rendered and validated here, or None when they can."""
    if kubectl_binary() is None:
        return "kubectl is not installed (scripts/dev/install_test_tools.sh unpacks one into the tool folder)"
    if not TOOL_PYTHON.is_file():
        return f"{TOOL_PYTHON} is missing (scripts/dev/install_test_tools.sh makes it with kubernetes-validate and kserve)"
    return None


def render_text(name: str) -> str:
    """``kubectl kustomize`` of the named folder, as YAML text."""
    kubectl = kubectl_binary()
    if kubectl is None:
        raise FileNotFoundError(missing_tools())
    result = subprocess.run([kubectl, "kustomize", str(RENDERINGS[name])], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {RENDERINGS[name]} failed:\n{result.stderr}")
    return result.stdout


def render(name: str) -> list[dict[str, Any]]:
    """The documents of a rendering."""
    return [document for document in yaml.safe_load_all(render_text(name)) if document]


def find(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one document of ``kind``."""
    (found,) = (document for document in documents if document.get("kind") == kind)
    return found


def validate(texts: dict[str, str], folder: Path) -> subprocess.CompletedProcess:
    """Run ``scripts.deploy.validate_manifests`` in the tool environment over each named YAML text (written into ``folder``)."""
    paths = []
    for name, text in texts.items():
        path = folder / f"{name}.yaml"
        path.write_text(text)
        paths.append(str(path))
    return subprocess.run([str(TOOL_PYTHON), "-m", "scripts.deploy.validate_manifests", *paths], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def main(argv: list[str] | None = None) -> int:
    """Command line: render one folder, or render and validate them all."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("render").add_argument("name", choices=list(RENDERINGS), nargs="?", default="base")
    sub.add_parser("validate")
    args = parser.parse_args(argv)
    if args.command == "render":
        sys.stdout.write(render_text(args.name))
        return 0
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        result = validate({name: render_text(name) for name in RENDERINGS}, Path(folder))
    sys.stdout.write(result.stdout + result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
