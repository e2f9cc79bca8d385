"""Build the project's Dockerfile with podman, run the image like a Space would and check it:
the API test and the page through nginx on the one published port, every process (nginx,
TorchServe's frontend and workers) as uid 1000, every other port on loopback only, and no
development tool (``requirements-dev.txt``) among the installed packages. Then
the same image runs as the pod of the rendered Kubernetes Deployment (``podman kube play`` of
``deploy/kubernetes/base``'s Deployment: its uid, read-only root filesystem, emptyDirs, port
and resources), the API test passes against it, and it is torn down.

No Docker engine and no registry are needed: the base image is either pulled
(``--base-image``, e.g. on CI) or made with ``debootstrap --variant=minbase bookworm``
plus Python 3.11 and imported into podman, cached under the cache folder by a hash of
how it is made. Podman's configuration and storage live in that cache folder too, and so
does the Dockerfile's ``runtime`` stage (Java and the requirements), tagged so that only
the project's own layers are rebuilt while requirements.txt stays the same.

Usage: python -m scripts.dev.container_test [--base-image IMAGE] [--keep] [--no-kube-play]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import yaml

from models.settings import COMPILED_ENV
from scripts.deploy import kube
from scripts.dev.requirements import dev_only_names, normalized
from scripts.paths import CONFIG, REPO
from scripts.serving.front import DEFAULT_LISTEN, read_properties
from scripts.serving.harness import free_port

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "denoiser-podman"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CONTAINER_CA_BUNDLE = "/etc/pip-host-ca.pem"
CONTAINER_WHEELS = "/wheels"
CONTAINER_UID = 1000
PUBLIC_PORT = int(DEFAULT_LISTEN.rsplit(":", 1)[1])  # nginx's, the only published port
PROPERTIES = read_properties(CONFIG)
TORCHSERVE_PORTS = {key: urlparse(PROPERTIES[f"{key}_address"]).port for key in ("inference", "management", "metrics")}
MANAGEMENT_PORT = TORCHSERVE_PORTS["management"]
RUNTIME_STAGE = "runtime"
RUNTIME_CACHE_TAG = "localhost/denoiser-runtime:cache"
API_TEST = REPO / "api-test.py"
LOAD_FAILED = "Load model failed"  # TorchServe's log line when a worker dies while loading its model

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
STORAGE_CONF = """\
[storage]
driver = "overlay"
runroot = "{cache}/run"
graphroot = "{cache}/storage"
"""
DEBOOTSTRAP_SUITE = "bookworm"
DEBOOTSTRAP_MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")


def local_wheel_dir() -> Path | None:
    """The host pip's local wheel folder (PIP_FIND_LINKS, else pip's find-links setting), if there is one."""
    links = os.environ.get("PIP_FIND_LINKS") or subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True, text=True, timeout=60,
    ).stdout
    return next((Path(link) for link in links.split() if Path(link).is_dir()), None)


@dataclass(frozen=True)
class ContainerTestConfig:
    """Everything the container test can be told; defaults suit this project's machines."""

    cache_dir: Path = DEFAULT_CACHE
    base_image: str | None = os.environ.get("DENOISER_CONTAINER_BASE") or None
    tag: str = "localhost/denoiser-server:test"
    wheel_dir: Path | None = field(default_factory=local_wheel_dir)
    ca_bundle: Path | None = HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None
    extra_index_url: str = os.environ.get("PIP_EXTRA_INDEX_URL", "https://pypi.org/simple").split()[0]
    ready_timeout_s: float = 600.0
    keep: bool = False
    kube_play: bool = True


@dataclass
class StepTimer:
    """Wall-clock seconds per named step, in order."""

    steps: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the enclosed block and record it under ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = round(time.perf_counter() - start, 1)


def podman_env(cache_dir: Path) -> dict[str, str]:
    """Write podman's containers.conf and storage.conf under cache_dir; return an environment using them."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    containers_conf = cache_dir / "containers.conf"
    storage_conf = cache_dir / "storage.conf"
    containers_conf.write_text(CONTAINERS_CONF)
    storage_conf.write_text(STORAGE_CONF.format(cache=cache_dir))
    return {**os.environ, "CONTAINERS_CONF": str(containers_conf), "CONTAINERS_STORAGE_CONF": str(storage_conf)}


def podman(env: dict[str, str], *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run one podman command and capture its output; raise with its stderr when check fails."""
    result = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def unavailable_reason(config: ContainerTestConfig) -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/dev/install_test_tools.sh installs it on Debian/Ubuntu)"
    if config.kube_play and kube.kubectl_binary() is None:
        return "kubectl is not installed, for rendering the Deployment (scripts/dev/install_test_tools.sh unpacks one)"
    if config.base_image is None and (shutil.which("debootstrap") is None or os.geteuid() != 0):
        return "no base image: set DENOISER_CONTAINER_BASE to a pullable image, or run as root with debootstrap"
    try:
        result = podman(podman_env(config.cache_dir), "info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"podman info failed: {exc}"
    if result.returncode != 0:
        return f"podman info failed: {result.stderr.strip()[-500:]}"
    return None


def base_image_recipe() -> str:
    """A text that changes whenever the bootstrapped base image would be made differently."""
    return json.dumps({"suite": DEBOOTSTRAP_SUITE, "mirror": DEBOOTSTRAP_MIRROR, "packages": DEBOOTSTRAP_PACKAGES, "variant": "minbase"})


def ensure_base_image(env: dict[str, str], cache_dir: Path) -> str:
    """Return a local base image name, importing the cached root-fs tarball or debootstrapping it first."""
    key = hashlib.sha256(base_image_recipe().encode()).hexdigest()[:12]
    name = f"localhost/denoiser-base:{key}"
    if podman(env, "image", "exists", name, check=False).returncode == 0:
        return name
    tarball = cache_dir / f"base-{key}.tar"
    if not tarball.is_file():
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            rootfs = Path(tmp) / "rootfs"
            subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={','.join(DEBOOTSTRAP_PACKAGES)}",
                 DEBOOTSTRAP_SUITE, str(rootfs), DEBOOTSTRAP_MIRROR],
                check=True, capture_output=True, timeout=1800,
            )
            shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
            partial = tarball.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=600)
            partial.rename(tarball)
    podman(env, "import", "--change", 'CMD ["/bin/bash"]', str(tarball), name, timeout=600)
    return name


def build_image(env: dict[str, str], config: ContainerTestConfig, base_image: str) -> None:
    """Build the project's real Dockerfile on base_image, with the host CA bundle and wheel folder mounted.

    The ``runtime`` stage is built and tagged first: the tag keeps its layers (Java, nginx and
    the requirements) cached after the test image is removed and dangling layers are pruned.
    """
    args = ["build", "--layers", "--format", "docker", "-f", str(REPO / "Dockerfile"),
            "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", f"PIP_EXTRA_INDEX_URL={config.extra_index_url}"]
    if config.ca_bundle is not None:
        args += ["-v", f"{config.ca_bundle}:{CONTAINER_CA_BUNDLE}:ro", "--build-arg", f"PIP_CERT={CONTAINER_CA_BUNDLE}"]
    if config.wheel_dir is not None:
        args += ["-v", f"{config.wheel_dir}:{CONTAINER_WHEELS}:ro", "--build-arg", f"PIP_FIND_LINKS={CONTAINER_WHEELS}"]
    podman(env, *args, "--target", RUNTIME_STAGE, "-t", RUNTIME_CACHE_TAG, str(REPO), timeout=3600)
    podman(env, *args, "-t", config.tag, str(REPO), timeout=3600)


def models_ready(env: dict[str, str], container: str) -> bool:
    """Whether every registered model has a READY worker, asked from inside the container on the management API."""
    script = (
        "import json, urllib.request\n"
        "get = lambda path: json.load(urllib.request.urlopen('http://127.0.0.1:{port}' + path, timeout=5))\n"
        "names = [m['modelName'] for m in get('/models')['models']]\n"
        "ready = all(any(w['status'] == 'READY' for e in get('/models/' + n) for w in e['workers']) for n in names)\n"
        "print('ready' if names and ready else 'waiting')\n"
    ).replace("{port}", str(MANAGEMENT_PORT))
    result = podman(env, "exec", container, "python", "-c", script, check=False)
    return result.stdout.strip() == "ready"


def wait_until_ready(env: dict[str, str], container: str, timeout_s: float) -> None:
    """Wait until every model has a READY worker; fail at once if the container exits or a model fails to load."""
    deadline = time.monotonic() + timeout_s
    while not models_ready(env, container):
        state = podman(env, "inspect", "--format", "{{.State.Status}}", container).stdout.strip()
        if state != "running":
            raise RuntimeError(f"container is {state}")
        if LOAD_FAILED in podman(env, "logs", container, check=False).stdout:
            raise RuntimeError(f"TorchServe could not load a model ({LOAD_FAILED!r} in the log)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"models not READY after {timeout_s:.0f} s")
        time.sleep(3)


def process_uids(env: dict[str, str], container: str) -> list[tuple[str, int]]:
    """(command name, real uid) of every process in the container, read from /proc inside it."""
    script = (
        "import os\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try: status = open(f'/proc/{pid}/status').read().splitlines()\n"
        "    except OSError: continue\n"
        "    fields = dict(line.split(':', 1) for line in status if ':' in line)\n"
        "    print(fields['Name'].strip(), fields['Uid'].split()[0])\n"
    )
    out = podman(env, "exec", container, "python3", "-c", script).stdout
    return [(name, int(uid)) for name, uid in (line.rsplit(maxsplit=1) for line in out.splitlines())]


def listening_sockets(env: dict[str, str], container: str) -> dict[int, set[str]]:
    """Port -> hex addresses the container listens on (from /proc/net/tcp and tcp6)."""
    out = podman(env, "exec", container, "cat", "/proc/net/tcp", "/proc/net/tcp6").stdout
    sockets: dict[int, set[str]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and ":" in parts[1] and parts[3] == "0A":  # 0A: LISTEN
            address, hex_port = parts[1].rsplit(":", 1)
            sockets.setdefault(int(hex_port, 16), set()).add(address)
    return sockets


def installed_distributions(env: dict[str, str], container: str) -> set[str]:
    """Normalised names of the distributions installed in the image's Python environment (``pip list``)."""
    listed = podman(env, "exec", container, "python", "-m", "pip", "list", "--format=json", "--disable-pip-version-check").stdout
    return {normalized(entry["name"]) for entry in json.loads(listed)}


def decided_candidates(env: dict[str, str], container: str) -> dict[str, list[str]]:
    """Each stored precision decision in the container's choice cache: the graphs' identity -> the candidates timed."""
    script = (
        "import glob, json, os\n"
        "from models.choice_cache import writable_cache_dir\n"
        "entries = [json.load(open(p)) for p in glob.glob(os.path.join(writable_cache_dir(), 'precision-*.json'))]\n"
        "print(json.dumps({e['key']['graphs']: sorted(e['choice']['seconds']) for e in entries}))\n"
    )
    return json.loads(podman(env, "exec", container, "python", "-c", script).stdout)


def container_ip(env: dict[str, str], container: str) -> str | None:
    """The container's address on podman's network, or None (e.g. rootless slirp4netns)."""
    out = podman(env, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", container).stdout.strip()
    return out or None


def port_open(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port succeeds within 3 seconds."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def wait_for_front(url: str, timeout_s: float) -> None:
    """Wait until nginx answers /ping on the published port (it starts once every model is READY)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=5) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nginx not answering {url}/ping after {timeout_s:.0f} s")
        time.sleep(1)


def check_front(url: str) -> None:
    """The page at / and a JSON 404 for TorchServe's management paths, through the published port."""
    with urllib.request.urlopen(f"{url}/", timeout=30) as page:
        assert page.headers["Content-Type"].startswith("text/html") and b"<title>Denoiser</title>" in page.read()
    try:
        urllib.request.urlopen(f"{url}/models", timeout=30)
        raise AssertionError("/models answered on the public port")
    except urllib.error.HTTPError as refused:
        assert refused.code == 404 and json.load(refused)["code"] == 404


def check_container(env: dict[str, str], container: str, url: str, tag: str) -> None:
    """Run api-test.py and the page check through nginx; check that the workers compiled their packages, the health
    check, uid 1000, that only nginx's port is public and that no development tool (``requirements-dev.txt``) is installed."""
    subprocess.run([sys.executable, str(API_TEST), "--url", url], check=True, timeout=900, cwd=REPO)
    installed = installed_distributions(env, container)
    assert {"torch", "torchserve"} <= installed, f"pip list is missing the served packages: {sorted(installed)}"
    assert not installed & dev_only_names(), f"development tools in the image: {sorted(installed & dev_only_names())}"
    check_front(url)
    decided = decided_candidates(env, container)
    assert decided and all(any(name.startswith("aoti-") for name in timed) for timed in decided.values()), (
        f"each model's decision must have timed a package compiled in the container: {decided}")
    health = podman(env, "healthcheck", "run", container, check=False)
    assert health.returncode == 0, f"HEALTHCHECK failed: {health.stdout}{health.stderr}"
    processes = process_uids(env, container)
    names = {name for name, _ in processes}
    assert {"java", "nginx"} <= names and any(name.startswith("python") for name in names), f"nginx or TorchServe not running: {processes}"
    assert {uid for _, uid in processes} == {CONTAINER_UID}, f"every process must run as uid {CONTAINER_UID}: {processes}"
    exposed = json.loads(podman(env, "image", "inspect", "--format", "{{json .Config.ExposedPorts}}", tag).stdout)
    assert set(exposed) == {f"{PUBLIC_PORT}/tcp"}, f"the image must expose {PUBLIC_PORT} only: {exposed}"
    # 127.0.0.1 in /proc/net/tcp, and ::1 and ::ffff:127.0.0.1 (Java's IPv4 sockets) in tcp6.
    loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
    sockets = listening_sockets(env, container)
    public = {port for port, addresses in sockets.items() if addresses - loopback}
    assert public == {PUBLIC_PORT}, f"only nginx's {PUBLIC_PORT} may listen beyond loopback: {sockets}"
    assert set(TORCHSERVE_PORTS.values()) <= set(sockets), f"TorchServe's APIs not listening: {sockets}"
    ip = container_ip(env, container)
    if ip is not None:
        assert port_open(ip, PUBLIC_PORT), f"public port not reachable at {ip}:{PUBLIC_PORT} (network check is invalid)"
        for port in TORCHSERVE_PORTS.values():
            assert not port_open(ip, port), f"TorchServe reachable from outside at {ip}:{port}"


def kube_play_manifest(tag: str, host_port: int) -> str:
    """The rendered Deployment as ``podman kube play`` runs it here: the test image, nginx's port
    published on 127.0.0.1:``host_port`` (a cluster reaches it through the Service instead), and
    no compiled candidates (``DENOISER_COMPILED=off``): the container run before it checks that
    the image compiles them, and compiling the three again would add a minute to the suite."""
    deployment = kube.find(kube.render("base"), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container["image"] = tag
    container["env"].append({"name": COMPILED_ENV, "value": "off"})
    (http,) = (port for port in container["ports"] if port["name"] == "http")
    http.update({"hostPort": host_port, "hostIP": "127.0.0.1"})
    return yaml.safe_dump(deployment, sort_keys=False)


def check_kube_play(env: dict[str, str], config: ContainerTestConfig, work: Path) -> None:
    """``podman kube play`` the Deployment with the built image, run api-test.py against it, tear it down."""
    port = free_port()
    manifest = work / "deployment.yaml"
    manifest.write_text(kube_play_manifest(config.tag, port))
    try:
        podman(env, "kube", "play", str(manifest), timeout=600)
        url = f"http://127.0.0.1:{port}"
        wait_for_front(url, config.ready_timeout_s)
        subprocess.run([sys.executable, str(API_TEST), "--url", url], check=True, timeout=900, cwd=REPO)
        check_front(url)
        (name,) = podman(env, "ps", "--filter", "label=app.kubernetes.io/name=denoiser-server", "--format", "{{.Names}}").stdout.split()
        assert {uid for _, uid in process_uids(env, name)} == {CONTAINER_UID}, "every process of the pod must run as uid 1000"
        read_only = podman(env, "exec", name, "touch", "/home/user/app/written", check=False)
        assert read_only.returncode != 0 and "Read-only file system" in read_only.stderr, "the root filesystem must be read-only"
        writable = podman(env, "exec", name, "touch", "/home/user/app/logs/written", check=False)
        assert writable.returncode == 0, f"the logs emptyDir must be writable: {writable.stderr}"
    except Exception:
        logs = podman(env, "pod", "logs", "--tail", "80", "denoiser-pod-0", check=False)
        print(logs.stdout[-6000:], logs.stderr[-6000:], file=sys.stderr)
        raise
    finally:
        podman(env, "kube", "play", "--down", str(manifest), check=False, timeout=300)


def run_container_test(config: ContainerTestConfig) -> dict[str, float]:
    """Build, run and check the image; always remove container and image unless keep. Returns step timings."""
    env = podman_env(config.cache_dir)
    timer = StepTimer()
    container = f"denoiser-test-{os.getpid()}"
    port = free_port()
    try:
        with timer.step("base_image"):
            base = config.base_image or ensure_base_image(env, config.cache_dir)
        with timer.step("build"):
            build_image(env, config, base)
        with timer.step("start_until_healthy"):
            podman(env, "run", "-d", "--init", "--name", container, "-p", f"127.0.0.1:{port}:{PUBLIC_PORT}", config.tag)
            wait_until_ready(env, container, config.ready_timeout_s)
            wait_for_front(f"http://127.0.0.1:{port}", config.ready_timeout_s)
        with timer.step("checks"):
            check_container(env, container, f"http://127.0.0.1:{port}", config.tag)
        if config.kube_play:
            if not config.keep:  # one replica at a time on this machine's two cores
                podman(env, "rm", "-f", "-t", "5", container, check=False)
            with timer.step("kube_play"), tempfile.TemporaryDirectory() as work:
                check_kube_play(env, config, Path(work))
    except Exception:
        logs = podman(env, "logs", "--tail", "80", container, check=False)
        print(logs.stdout[-6000:], logs.stderr[-6000:], file=sys.stderr)
        raise
    finally:
        if not config.keep:
            with timer.step("cleanup"):
                podman(env, "rm", "-f", "-t", "5", container, check=False)
                podman(env, "rmi", "-f", config.tag, check=False)
                podman(env, "image", "prune", "-f", check=False, timeout=600)
    return timer.steps


def main(argv: list[str] | None = None) -> int:
    """Command line: run the container test and print the timing of each step as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-image", help="pullable base image instead of the debootstrapped one")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--keep", action="store_true", help="keep the container and image for inspection")
    parser.add_argument("--no-kube-play", action="store_true", help="skip running the Kubernetes Deployment with podman kube play")
    args = parser.parse_args(argv)
    config = ContainerTestConfig(cache_dir=args.cache_dir, base_image=args.base_image or ContainerTestConfig.base_image, keep=args.keep,
                                 kube_play=not args.no_kube_play)
    reason = unavailable_reason(config)
    if reason:
        print(f"container test cannot run: {reason}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    steps = run_container_test(config)
    print(json.dumps({**steps, "total": round(time.perf_counter() - start, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
