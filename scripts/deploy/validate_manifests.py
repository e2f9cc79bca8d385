"""Validate rendered manifests strictly: Kubernetes kinds against the Kubernetes OpenAPI schemas that
kubernetes-validate bundles (unknown fields refused), InferenceServices against the kserve SDK's
models (every field a field of its model and of its type, and each model built, so that the
models' own checks apply).

    python -m scripts.deploy.validate_manifests [--kubernetes-version 1.37.0] FILE ...   (multi-document YAML; - is stdin)

Prints one line per document and exits 1 if any is invalid. Runs in the tool environment that
``scripts/dev/install_test_tools.sh`` makes (``TOOLS_DIR/k8s-venv``: kubernetes-validate and kserve,
which serving does not need); ``scripts.deploy.kube`` runs it there.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
from collections.abc import Iterable
from typing import Any

import yaml

KUBERNETES_VERSION = "1.37.0"
KSERVE_GROUP = "serving.kserve.io/"
KSERVE_KINDS = {"InferenceService": "V1beta1InferenceService"}
LIST_TYPE = re.compile(r"^(?:list|List)\[(.+)\]$")
DICT_TYPE = re.compile(r"^(?:dict\(str, (.+)\)|Dict\[str, (.+)\])$")
PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "bool": (bool,), "float": (int, float), "object": (object,),
    "datetime": (str,), "date": (str,), "ResourceQuantity": (str, int, float),
}


class Invalid(ValueError):
    """A manifest field that its model does not have, or whose value is of the wrong type."""


def model_class(name: str) -> type:
    """The SDK model class called ``name`` (kserve's own, else the Kubernetes client's it reuses)."""
    import kserve.models
    import kubernetes.client.models

    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    raise Invalid(f"no SDK model named {name}")


def build(value: Any, type_name: str, path: str) -> Any:
    """``value`` converted to ``type_name`` (an SDK model or an OpenAPI type string); raises ``Invalid``."""
    if match := LIST_TYPE.match(type_name):
        if not isinstance(value, list):
            raise Invalid(f"{path}: expected a list, got {type(value).__name__}")
        return [build(item, match.group(1), f"{path}[{index}]") for index, item in enumerate(value)]
    if match := DICT_TYPE.match(type_name):
        if not isinstance(value, dict):
            raise Invalid(f"{path}: expected a mapping, got {type(value).__name__}")
        item_type = match.group(1) or match.group(2)
        return {key: build(item, item_type, f"{path}.{key}") for key, item in value.items()}
    if type_name in PRIMITIVES:
        if not isinstance(value, PRIMITIVES[type_name]) or (type_name == "int" and isinstance(value, bool)):
            raise Invalid(f"{path}: expected {type_name}, got {type(value).__name__} {value!r}")
        return value
    cls = model_class(type_name)
    if not isinstance(value, dict):
        raise Invalid(f"{path}: expected a {type_name} mapping, got {type(value).__name__}")
    attributes = {json_name: attribute for attribute, json_name in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(attributes))
    if unknown:
        raise Invalid(f"{path}: {type_name} has no field {', '.join(unknown)}")
    arguments = {attributes[key]: build(item, cls.openapi_types[attributes[key]], f"{path}.{key}") for key, item in value.items()}
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as error:
        raise Invalid(f"{path}: {type_name}: {error}") from None


def validate_kserve(document: dict[str, Any]) -> None:
    """Check a KServe resource against the kserve SDK's model of its kind; raises ``Invalid``."""
    kind = document.get("kind")
    if kind not in KSERVE_KINDS:
        raise Invalid(f"no kserve SDK model for kind {kind!r}")
    if document.get("apiVersion") != f"{KSERVE_GROUP}v1beta1":
        raise Invalid(f"{kind} must be {KSERVE_GROUP}v1beta1, got {document.get('apiVersion')!r}")
    build(document, KSERVE_KINDS[kind], kind)


def validate_document(document: dict[str, Any], kubernetes_version: str = KUBERNETES_VERSION) -> str:
    """Validate one manifest strictly; returns what it was checked against, raises on any error."""
    if str(document.get("apiVersion", "")).startswith(KSERVE_GROUP):
        validate_kserve(document)
        return f"kserve {importlib.metadata.version('kserve')} SDK models"
    import kubernetes_validate

    kubernetes_validate.validate(document, kubernetes_version, strict=True)
    return f"Kubernetes {kubernetes_version} schemas, strict"


def documents(paths: Iterable[str]) -> Iterable[tuple[str, dict[str, Any]]]:
    """(source, document) for every non-empty YAML document of ``paths``."""
    for path in paths:
        text = sys.stdin.read() if path == "-" else open(path).read()
        for document in yaml.safe_load_all(text):
            if document:
                yield path, document


def main(argv: list[str] | None = None) -> int:
    """Command line: validate every document, print a line each, exit 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--kubernetes-version", default=KUBERNETES_VERSION)
    args = parser.parse_args(argv)
    failed = checked = 0
    for source, document in documents(args.files):
        name = f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')} ({source})"
        checked += 1
        try:
            print(f"ok    {name}: {validate_document(document, args.kubernetes_version)}")
        except Exception as error:  # noqa: BLE001 - every validator's error is reported, then the exit code says it failed
            failed += 1
            print(f"FAIL  {name}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    print(f"{checked - failed} valid, {failed} invalid")
    return 1 if failed or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
