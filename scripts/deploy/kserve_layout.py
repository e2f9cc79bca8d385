"""Lay the model archives out as KServe mounts a TorchServe ``storageUri``, from the same build as ``model_store/``.

KServe's ``pytorch`` runtime (``kserve-torchserve``) mounts the storage at ``/mnt/models`` and
runs ``torchserve --start --model-store=/mnt/models/model-store
--ts-config=/mnt/models/config/config.properties`` with ``TS_SERVICE_ENVELOPE`` taken from the
InferenceService's ``serviceEnvelope`` label; its image puts KServe's model server on port 8080
in front of TorchServe's inference API on 8085 and lets Prometheus scrape port 8082. So::

    OUT/model-store/UNET.mar, R-UNET.mar, A-R-UNET.mar   (scripts.serving.archives's archives)
    OUT/config/config.properties                         (kserve_properties below)

``config.properties`` keeps this project's limits and settings (``config.properties`` at the
repository root: queue, body and answer sizes, workers, token and model-API settings) and sets
what the runtime needs: the inference API on loopback port 8085 (management beside it, for
the model server's readiness checks, on loopback too), metrics in Prometheus form on
0.0.0.0:8082, gRPC on loopback 7070/7071, the model store under ``/mnt/models``, every model
loaded (``model_snapshot`` names them, as KServe's model server reads them from it), and
``enable_envvars_config=true`` so that the label's ``TS_SERVICE_ENVELOPE`` applies.

    python -m scripts.deploy.kserve_layout --out kserve-storage [--envelope kserve|kservev2] [--force]

The handler reads v1, v2 and raw bytes itself, so no envelope is needed (the default, an empty
``service_envelope``); under the ``kserve`` or ``kservev2`` envelope only that protocol works.

Upload ``OUT`` to the bucket or volume the InferenceService's ``storageUri`` names
(``deploy/kubernetes/kserve/``, docs/scaling.md).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

from models.settings import SERVING_CONFIG
from scripts.paths import CONFIG, MODEL_STORE, print_paths
from scripts.serving.archives import build_store
from scripts.serving.front import read_properties

MOUNT = Path("/mnt/models")
STORE_DIR = "model-store"
CONFIG_DIR = "config"
# KServe's TorchServe image: its model server answers on 8080 and forwards to TorchServe here.
INFERENCE_PORT = 8085
# The runtime's Prometheus annotation (prometheus.kserve.io/port).
METRICS_PORT = 8082
GRPC_INFERENCE_PORT = 7070
GRPC_MANAGEMENT_PORT = 7071
# TS_SERVICE_ENVELOPE values: none (the handler reads v1, v2 and raw bytes itself), or TorchServe's
# envelope for one protocol. KServe sets the variable from the serviceEnvelope label, empty without one.
ENVELOPES = ("", "kserve", "kservev2")
ENVELOPE_ENV = "TS_SERVICE_ENVELOPE"


def runtime_command(torchserve: str = "torchserve", mount: Path = MOUNT) -> list[str]:
    """The command KServe's TorchServe runtime starts (its ServingRuntime's args), with the storage at ``mount``."""
    return [torchserve, "--start", f"--model-store={mount / STORE_DIR}", f"--ts-config={mount / CONFIG_DIR / 'config.properties'}"]
# The project's settings that are not about addresses or the store, copied as they are.
KEPT = (
    "disable_token_authorization", "enable_model_api", "default_workers_per_model", "number_of_netty_threads",
    "netty_client_threads", "job_queue_size", "max_request_size", "max_response_size", "default_response_timeout",
    "cors_allowed_origin", "cors_allowed_methods", "cors_allowed_headers", "disable_system_metrics",
)


def manifest_name(archive: Path) -> str:
    """The model name an archive's manifest registers."""
    with zipfile.ZipFile(archive) as packed:
        return json.loads(packed.read("MAR-INF/MANIFEST.json"))["model"]["modelName"]


def model_snapshot(archives: list[Path]) -> dict:
    """TorchServe's ``model_snapshot`` loading every archive with the archives' own per-model settings."""
    keys = ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout", "startupTimeout")
    models = {
        manifest_name(archive): {"1.0": {"defaultVersion": True, "marName": archive.name, **{key: SERVING_CONFIG[key] for key in keys}}}
        for archive in archives
    }
    return {"name": "startup.cfg", "modelCount": len(models), "models": models}


def kserve_properties(archives: list[Path], envelope: str, project_config: Path = CONFIG, mount: Path = MOUNT) -> dict[str, str]:
    """The settings of ``config/config.properties`` for KServe's TorchServe runtime, in file order."""
    if envelope not in ENVELOPES:
        raise ValueError(f"envelope must be one of {ENVELOPES}, got {envelope!r}")
    project = read_properties(project_config)
    return {
        "inference_address": f"http://127.0.0.1:{INFERENCE_PORT}",
        "management_address": f"http://127.0.0.1:{INFERENCE_PORT}",
        "metrics_address": f"http://0.0.0.0:{METRICS_PORT}",
        "grpc_inference_address": "127.0.0.1",
        "grpc_management_address": "127.0.0.1",
        "grpc_inference_port": str(GRPC_INFERENCE_PORT),
        "grpc_management_port": str(GRPC_MANAGEMENT_PORT),
        "enable_metrics_api": "true",
        "metrics_mode": "prometheus",
        "model_metrics_auto_detect": "true",
        "enable_envvars_config": "true",
        "service_envelope": envelope,
        "model_store": str(mount / STORE_DIR),
        "load_models": "all",
        "model_snapshot": json.dumps(model_snapshot(archives), separators=(",", ":")),
        **{key: project[key] for key in KEPT if key in project},
    }


def properties_text(properties: dict[str, str]) -> str:
    """``properties`` as a Java properties file, with a header saying where it comes from."""
    header = (
        "# Denoiser-Server on KServe's TorchServe runtime: written by `python -m scripts.deploy.kserve_layout` from the\n"
        "# repository's config.properties (limits, queue, workers) and what the runtime needs (ports, metrics,\n"
        "# store, models). TS_SERVICE_ENVELOPE, set by the runtime from the serviceEnvelope label (empty without\n"
        "# one), overrides service_envelope (enable_envvars_config); empty, the handler reads v1, v2 and raw bytes.\n"
    )
    return header + "".join(f"{key}={value}\n" for key, value in properties.items())


def lay_out(out: Path, envelope: str = "", model_store: Path = MODEL_STORE, force: bool = False) -> list[Path]:
    """Build the archives into ``model_store`` (kept when up to date), copy them to ``out/model-store``, write the config.

    Returns the files written. Archives of other names already in ``out/model-store`` are removed,
    so the store holds exactly the served models.
    """
    archives = build_store(model_store, force=force)
    store, config_dir = out / STORE_DIR, out / CONFIG_DIR
    store.mkdir(parents=True, exist_ok=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    wanted = {archive.name for archive in archives}
    for stale in store.glob("*.mar"):
        if stale.name not in wanted:
            stale.unlink()
    written = []
    for archive in archives:
        target = store / archive.name
        partial = target.with_suffix(".partial")
        shutil.copy2(archive, partial)
        os.replace(partial, target)
        written.append(target)
    config_file = config_dir / "config.properties"
    config_file.write_text(properties_text(kserve_properties(written, envelope)))
    return [*written, config_file]


def main(argv: list[str] | None = None) -> int:
    """Command line: lay out the KServe storage folder."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the folder to upload as the storageUri")
    parser.add_argument("--envelope", choices=ENVELOPES, default="",
                        help="service_envelope written to the config (default none: the handler reads v1, v2 and raw "
                             "bytes itself); the runtime's TS_SERVICE_ENVELOPE, from the serviceEnvelope label, overrides it")
    parser.add_argument("--model-store", type=Path, default=MODEL_STORE, help="where the archives are built (default: model_store/)")
    parser.add_argument("--force", action="store_true", help="rebuild the archives even when up to date")
    args = parser.parse_args(argv)
    return print_paths(lambda: lay_out(args.out, args.envelope, args.model_store, args.force))


if __name__ == "__main__":
    sys.exit(main())

