"""Build the real Dockerfile with podman, run it like the Space does and check it (it serves, is locked down and
holds no development tool), then run the same image as the pod of the rendered Kubernetes Deployment with
``podman kube play`` (scripts/dev/container_test.py)."""
from __future__ import annotations

import os

import pytest

from scripts.dev.container_test import ContainerTestConfig, run_container_test, unavailable_reason

CONFIG = ContainerTestConfig()
pytestmark = pytest.mark.container


@pytest.mark.container
@pytest.mark.timeout(3600)
def test_image_builds_serves_and_is_locked_down(capsys: pytest.CaptureFixture[str]) -> None:
    """The image builds, serves the API test as uid 1000, keeps management unreachable, and runs as the Deployment's pod."""
    reason = unavailable_reason(CONFIG)
    if reason:
        # CI installs podman (scripts/dev/install_test_tools.sh): there a missing tool is a failure.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"podman cannot run containers here: {reason}")
    steps = run_container_test(CONFIG)
    with capsys.disabled():  # on the terminal even when it passes: the suite's longest test, step by step
        print(f"\ncontainer test steps (s): {steps}")
