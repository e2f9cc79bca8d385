"""The served image's requirements hold no development tool, and the serving path imports nothing
else: every third-party module that the handler, the supervisor or the archive builder can
import (followed through the project's own modules) comes from a distribution in
``requirements.txt``. The container test checks the built image's installed packages."""
from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

from scripts.dev.requirements import DEV, RUNTIME, dev_only_names, normalized, requirement_names
from scripts.paths import REPO

# What the image runs: the worker's handler, the supervisor (nginx configuration included) and
# the archive builder (run inside the image); and api-test.py, which the README runs with the
# venv that scripts/serve.sh makes.
SERVING_ENTRY_POINTS = ("handler", "scripts.serving.supervisor", "scripts.serving.archives", "api-test")
FIRST_PARTY = {"handler", "api-test", "models", "scripts", "tests"}
TEST_TOOLS = {"pytest", "pytest-timeout", "hypothesis", "ruff", "scikit-image", "opencv-python-headless"}


def module_file(name: str) -> Path | None:
    """The file of first-party module ``name`` (a module or a package's ``__init__``), if there is one."""
    path = REPO.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(name: str, path: Path) -> set[str]:
    """Absolute names of every module that ``path`` (module ``name``) imports anywhere, nested imports included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}".rstrip(".")
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {module for module in found if module}


def serving_imports(entry_points: tuple[str, ...] = SERVING_ENTRY_POINTS) -> tuple[set[str], set[str]]:
    """(first-party modules, third-party top-level names) reachable from ``entry_points``."""
    seen: set[str] = set()
    third_party: set[str] = set()
    pending = list(entry_points)
    while pending:
        name = pending.pop()
        top = name.split(".")[0]
        if top not in FIRST_PARTY:
            if top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
            continue
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # a package's __init__ runs before its modules
            module = ".".join(parts[:depth])
            path = module_file(module)
            if module not in seen and path is not None:
                seen.add(module)
                pending.extend(imports_of(module, path))
    return seen, third_party


def test_the_image_requirements_hold_no_test_tool() -> None:
    """The test tools are development requirements only, and the development file includes the image's."""
    assert TEST_TOOLS <= dev_only_names()
    assert requirement_names(RUNTIME) < requirement_names(DEV)


def test_the_serving_path_imports_only_what_the_image_installs() -> None:
    """Every third-party module the serving path imports belongs to a distribution in requirements.txt."""
    modules, third_party = serving_imports()
    assert {"handler", "scripts.serving.supervisor", "scripts.serving.processes", "scripts.serving.front", "models.pipeline"} <= modules
    assert not any(module.split(".")[0] == "tests" for module in modules)
    distributions = importlib.metadata.packages_distributions()
    needed = {normalized(dist) for top in third_party for dist in distributions.get(top, [top])}
    assert needed <= requirement_names(RUNTIME), f"not in requirements.txt: {sorted(needed - requirement_names(RUNTIME))}"


def test_a_development_import_on_the_serving_path_is_found(tmp_path: Path, monkeypatch) -> None:
    """The import walk sees nested imports, so a dev-only package imported inside a function is caught."""
    package = tmp_path / "scripts"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tool.py").write_text("from . import helper\n")
    (package / "helper.py").write_text("def f():\n    import tqdm\n    from skimage.metrics import peak_signal_noise_ratio\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    modules, third_party = serving_imports(("scripts.tool",))
    assert modules == {"scripts", "scripts.tool", "scripts.helper"}
    assert third_party == {"tqdm", "skimage"}


def test_requirement_names_follow_includes_and_skip_comments(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("# comment\nTorch_Model.Archiver==0.12.0  # pinned\nnumpy>=1.26,<3\n")
    (tmp_path / "dev.txt").write_text("-r base.txt\n\npytest[testing]>=8\n")
    assert requirement_names(tmp_path / "dev.txt") == {"torch-model-archiver", "numpy", "pytest"}
