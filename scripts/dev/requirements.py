"""The distributions a requirements file names: the served image's (``requirements.txt``) and
the development tools on top of it (``requirements-dev.txt``)."""
from __future__ import annotations

import re
from pathlib import Path

from scripts.paths import REPO

RUNTIME = REPO / "requirements.txt"
DEV = REPO / "requirements-dev.txt"


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(path: Path) -> set[str]:
    """Normalised names of the distributions ``path`` requires, following ``-r`` includes."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names |= requirement_names(path.parent / line[2:].strip())
        elif line:
            names.add(normalized(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0]))
    return names


def dev_only_names() -> set[str]:
    """What ``requirements-dev.txt`` adds to the served image's requirements."""
    return requirement_names(DEV) - requirement_names(RUNTIME)
