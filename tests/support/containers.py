"""Containers for the tests, under podman and with no registry of images: a stock Debian base
image built from Debian's own packages (deploy/base-image.sh, cached on the machine), the host's
pip network settings passed in, and containers that the test owns and removes.

podman runs with deploy/containers.conf (runc, podman's open-files default emptied): see there.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.requirements import skip_unless

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE_SCRIPT = ROOT / "deploy" / "base-image.sh"
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "containers.conf")}
# where a pip option that names a host file finds that file inside a container
HOST_FILES = "/etc/arroyo-host"


def require_podman() -> None:
    """Skip (fail in CI) unless containers can be built and run here."""
    skip_unless(os.geteuid() == 0, "building a base image with debootstrap needs root")
    for tool, package in (("podman", "podman"), ("runc", "runc"),
                          ("debootstrap", "debootstrap")):
        skip_unless(shutil.which(tool) is not None,
                    f"needs {tool} (apt-get install {package}; .ci/run installs it)")


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``podman ARGS`` with the project's containers.conf; output captured as text."""
    result = subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    if check and result.returncode:
        raise RuntimeError(f"podman {' '.join(args)} exited {result.returncode}: "
                           f"{result.stderr.strip()[-2000:]}")
    return result


def base_image(*packages: str) -> str:
    """Name of a stock Debian image with ``packages`` (deploy/base-image.sh's default when
    none): built on first use (about a minute), then taken from podman's store."""
    result = subprocess.run([str(BASE_IMAGE_SCRIPT), *packages], env=ENV, capture_output=True,
                            text=True, timeout=900, stdin=subprocess.DEVNULL)
    if result.returncode:
        raise RuntimeError(f"deploy/base-image.sh exited {result.returncode}: "
                           f"{result.stderr.strip()[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


def host_pip_settings() -> tuple[dict[str, str], list[str]]:
    """The host's pip settings that reach its package index, as (environment, volumes) for a
    container: index URLs (http and https only: local ``file:`` indexes stay on the host),
    trusted hosts, proxy, timeout and the CA bundle (mounted read-only under HOST_FILES).

    Without them pip in the container would not trust a host whose index is reached through
    a proxy with its own certificate authority."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True, timeout=60).stdout
    from_files: dict[str, str] = {}
    from_env: dict[str, str] = {}
    for line in listed.splitlines():
        name, _, value = line.partition("=")
        section, _, key = name.rpartition(".")
        if section in ("global", "install", "download"):
            from_files[key] = value.strip("'\"")
        elif section == ":env:":
            from_env[key] = value.strip("'\"")
    settings = {**from_files, **from_env}
    env: dict[str, str] = {}
    volumes: list[str] = []
    for key in ("index-url", "extra-index-url", "trusted-host", "proxy", "timeout",
                "default-timeout", "retries"):
        value = settings.get(key)
        if key.endswith("index-url") and value:
            value = " ".join(url for url in value.split() if url.startswith(("http:", "https:")))
        if value:
            env["PIP_" + key.upper().replace("-", "_")] = value
    for key in ("cert", "client-cert"):
        if settings.get(key) and Path(settings[key]).is_file():
            inside = f"{HOST_FILES}/{key}.pem"
            volumes.append(f"{settings[key]}:{inside}:ro")
            env["PIP_" + key.upper().replace("-", "_")] = inside
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                 "no_proxy"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env, volumes


class Container:
    """A container kept running (``sleep infinity``) for :meth:`exec`; :meth:`remove` at
    teardown removes it whatever state it is in."""

    def __init__(self, image: str, env: dict[str, str] | None = None,
                 volumes: list[str] | None = None) -> None:
        self.name = f"arroyo-test-{secrets.token_hex(4)}"
        args = ["run", "--detach", "--name", self.name]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        for volume in volumes or []:
            args += ["--volume", volume]
        podman(*args, image, "sleep", "infinity")

    def exec(self, command: str, user: str = "root", workdir: str = "/",
             timeout: float = 600) -> subprocess.CompletedProcess:
        """``bash -c COMMAND`` in the container as ``user``; stdout and stderr together."""
        return subprocess.run(
            ["podman", "exec", "--user", user, "--workdir", workdir, self.name,
             "bash", "-c", command],
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL)

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


def build_image(containerfile: Path, tag: str, context: Path, work: Path,
                build_args: dict[str, str] | None = None) -> str:
    """``podman build`` of ``containerfile`` in ``context`` as ``tag``, its ``pip install``
    steps reaching the package index with the host's settings (host_pip_settings, given as
    an /etc/pip.conf mounted for the build only, so none of it stays in the image)."""
    env, volumes = host_pip_settings()
    conf = work / "pip.conf"
    conf.write_text("[global]\n" + "".join(
        f"{key[4:].lower().replace('_', '-')} = {value}\n"
        for key, value in env.items() if key.startswith("PIP_")))
    args = ["build", "--quiet", "--network", "host", "--file", str(containerfile),
            "--tag", tag, "--volume", f"{conf}:/etc/pip.conf:ro"]
    for volume in volumes:
        args += ["--volume", volume]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):  # docker's predefined ARGs
        if name in env:
            args += ["--build-arg", f"{name}={env[name]}"]
    podman(*args, str(context), timeout=900)
    return tag


def python_image() -> str:
    """The stand-in for ``python:3.11-slim`` (deploy/python-base.Containerfile on the stock
    Debian image): built on first use, then taken from podman's store."""
    debian = base_image()
    containerfile = ROOT / "deploy" / "python-base.Containerfile"
    key = hashlib.sha256(containerfile.read_bytes()).hexdigest()[:8]
    tag = f"localhost/arroyo-python:{debian.rpartition(':')[2]}-{key}"
    if podman("image", "exists", tag, check=False).returncode != 0:
        podman("build", "--quiet", "--file", str(containerfile), "--build-arg",
               f"DEBIAN={debian}", "--tag", tag, str(ROOT / "deploy"), timeout=300)
    return tag


def clean_clone(destination: Path) -> Path:
    """``git clone`` of this checkout into ``destination``: what a newcomer gets, without
    local files (skips where this is no git checkout)."""
    skip_unless((ROOT / ".git").exists(), "needs a git checkout of the project to clone")
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(destination)],
                   check=True, timeout=120, capture_output=True)
    return destination
