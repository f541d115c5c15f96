"""docker-compose.yml and deploy/Dockerfile, checked without a container engine (with one:
test_containers.py):

- the Dockerfile's COPY and `pip install` steps, run in a fresh virtual environment, give a
  working `arroyo` (the image's ENTRYPOINT) without the dev extras;
- every service's command is a valid invocation of that `arroyo` (its own --check), on the
  chain file the compose file mounts into its container;
- every address a service connects to is bound by the compose service it names, with
  matching patterns and exposed ports, and each healthcheck asks that service's status port;
- the compose commands, unchanged, stream frames end to end inside a private network
  namespace whose /etc/hosts maps the compose service names, and their healthchecks pass.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.chain import load_chain
from services.processes import ServiceProcess, free_port
from tests.support.ledgers import logged_ledger
from tests.support.netns import Namespaces, require_root
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PEERS = {"push": "pull", "pub": "sub"}


def mounts(service: dict) -> dict[str, str]:
    """{path in the container: directory here} of a compose service's read-only bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        host, inside, mode = volume.split(":")
        assert mode == "ro" and host.startswith("./"), volume
        found[inside] = str(ROOT / host)
    return found


def host_command(service: dict) -> list[str]:
    """A compose service's command with the files mounted into its container named by
    their paths here: what the container runs, as seen from this checkout."""
    inside = mounts(service)

    def here(word: str) -> str:
        for mount, host in inside.items():
            if word.startswith(mount + "/"):
                return host + word[len(mount):]
        return word

    return [here(word) for word in service["command"]]


CHAIN = load_chain(host_command(SERVICES["source"])[1])  # the chain file the services read


def dockerfile_steps(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    steps, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        word, _, rest = text.partition(" ")
        steps.append((word.upper(), rest.strip()))
    return steps


class Image:
    """What the Dockerfile would build, in a fresh venv: COPY into a scratch root, RUN the
    pip steps with the Dockerfile's ARG defaults and ENV (pip from the venv)."""

    def __init__(self, base: Path) -> None:
        self.steps = dockerfile_steps(ROOT / "deploy" / "Dockerfile")
        self.venv = base / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=120)
        self.arroyo = str(self.venv / "bin" / "arroyo")
        root = base / "image"
        env = {**os.environ, "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
        env.pop("PYTHONPATH", None)
        workdir = root
        self.user = "root"
        self.entrypoint: list[str] = []
        self.pip_steps = []
        for word, rest in self.steps:
            if word == "ARG":
                name, _, default = rest.partition("=")
                env[name] = default.strip('"')
            elif word == "ENV":
                env.update(pair.split("=", 1) for pair in shlex.split(rest))
            elif word == "WORKDIR":
                workdir = root / rest.lstrip("/")
                workdir.mkdir(parents=True, exist_ok=True)
            elif word == "COPY":
                *sources, dest = shlex.split(rest)
                target = workdir / dest
                for source in sources:
                    src = ROOT / source
                    if src.is_dir():
                        shutil.copytree(src, target, ignore=shutil.ignore_patterns(
                            "__pycache__", "*.egg-info"))  # as .dockerignore does
                    else:
                        target.mkdir(parents=True, exist_ok=True)
                        shutil.copy(src, target)
            elif word == "RUN" and "pip install" in rest:
                self.pip_steps.append(rest)
                result = subprocess.run(["bash", "-c", rest], cwd=workdir, env=env,
                                        capture_output=True, text=True, timeout=300)
                assert result.returncode == 0, f"RUN {rest}:\n{result.stdout}{result.stderr}"
            elif word == "USER":
                self.user = rest
            elif word == "ENTRYPOINT":
                self.entrypoint = json.loads(rest)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return subprocess.run([self.arroyo, *args], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=self.venv)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Image:
    return Image(tmp_path_factory.mktemp("image"))


def ends(service: str) -> list[tuple[str, bool, str, str]]:
    """(key, binds, address, pattern) of a compose service's data sockets, from the chain
    file as its container reads it."""
    config = CHAIN.resolve(service, "compose")
    found = []
    if config.in_:
        found.append(("in", config.in_.startswith("@"), config.in_.lstrip("@>"),
                      config.in_pattern or "pull"))
    for text in config.out:
        found.append(("out", not text.startswith(">"), text.lstrip("@>"),
                      config.out_pattern or "push"))
    return found


@pytest.mark.slow
def test_dockerfile_installs_a_working_arroyo_without_dev_extras(image):
    assert image.steps[:2] == [("ARG", "BASE=python:3.11-slim"), ("FROM", "${BASE}")]
    assert image.entrypoint == ["arroyo"]
    assert image.user not in ("root", "0", "")
    assert image.pip_steps, "the Dockerfile has no pip install step"
    result = image.run("--help")
    assert result.returncode == 0 and "listener" in result.stdout, result.stderr
    import_check = subprocess.run(
        [str(image.venv / "bin" / "python"), "-c",
         "import importlib.util as u; print([m for m in ('h5py', 'supervisor', 'pytest', "
         "'redis') if u.find_spec(m)])"], capture_output=True, text=True, timeout=60)
    assert import_check.stdout.strip() == "[]", "the image has extras it does not need"


@pytest.mark.slow
@pytest.mark.parametrize("mode", [["--check"], []], ids=["check", "start"])
def test_the_image_names_the_extra_that_a_hdf5_sink_needs(image, mode):
    """The image has no h5py (no EXTRAS): a sink = "hdf5" service says what to install, in
    one line and exit 2, at --check as at start."""
    result = image.run("publisher", "--in", f">tcp://127.0.0.1:{free_port()}", "--sink", "hdf5",
                       *mode)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == ("error: [publisher] hdf5: needs h5py, which is not installed: "
                             "pip install 'arroyo-stream[hdf5]'\n")


@pytest.mark.slow
def test_every_compose_command_is_a_valid_arroyo_invocation(image):
    assert set(SERVICES) == {"source", "operator", "sink"}
    for name, service in SERVICES.items():
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).exists()
        result = image.run(*host_command(service), "--check")
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        assert f"config ok: {name}" in result.stdout


def test_every_connect_address_is_bound_by_the_service_it_names():
    connections = 0
    for name in SERVICES:
        for key, binds, address, pattern in ends(name):
            if binds:
                continue
            host, _, port = address.removeprefix("tcp://").rpartition(":")
            assert host in SERVICES, f"{name} {key} {address}: no compose service {host!r}"
            bound = [(k, a, p) for k, b, a, p in ends(host)
                     if b and a.rpartition(":")[2] == port]
            assert bound, f"{name} connects to {address} but {host} binds no port {port}"
            peer_key, peer_address, peer_pattern = bound[0]
            assert peer_key != key, f"{name} {key} meets {host} {peer_key}"
            assert peer_address.removeprefix("tcp://").rpartition(":")[0] in ("*", "0.0.0.0")
            assert {pattern, peer_pattern} in ({"push", "pull"}, {"pub", "sub"})
            assert port in SERVICES[host]["expose"]
            upstream = name if key == "out" else host
            downstream = host if key == "out" else name
            assert downstream in SERVICES[upstream].get("depends_on", {})
            connections += 1
    assert connections == 2  # source -> operator -> sink


def test_healthchecks_ask_each_service_its_own_status_port():
    for name, service in SERVICES.items():
        stats = CHAIN.resolve(name, "compose").status
        port = stats.rpartition(":")[2]
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "arroyo", "status"]
        assert test[-1] == f"tcp://127.0.0.1:{port}" and stats.startswith("tcp://*:")
        assert f"127.0.0.1:{port}:{port}" in service["ports"]
        assert service["stop_signal"] == "SIGTERM"
        drain = CHAIN.resolve(name, "compose").drain_timeout
        assert int(service["stop_grace_period"].rstrip("s")) > drain


@pytest.mark.slow
def test_compose_commands_stream_with_service_names_in_a_private_namespace(image):
    require_root()
    namespaces = Namespaces()
    services: list[ServiceProcess] = []
    try:
        ns = namespaces.add("compose", hosts="127.0.0.1 localhost " + " ".join(SERVICES) + "\n")

        def health(name: str) -> subprocess.CompletedProcess:
            test = SERVICES[name]["healthcheck"]["test"]
            return namespaces.run(ns, image.arroyo, *test[2:])

        assert health("sink").returncode != 0  # unhealthy before it runs
        for name in ("sink", "operator", "source"):  # the order depends_on gives
            services.append(ServiceProcess.from_argv(host_command(SERVICES[name]), name,
                                                     prefix=namespaces.exec_prefix(ns)))
            services[-1].wait_ready()
            result = health(name)
            assert result.returncode == 0, result.stderr

        def sink_frames() -> int:
            query = ("import json; from services.status_server import query_status; "
                     f"print(json.dumps(query_status({SERVICES['sink']['healthcheck']['test'][-1]!r})))")
            runs = json.loads(namespaces.run(ns, sys.executable, "-c", query).stdout)[
                "outputs"][0]["runs"]
            return runs[-1]["frames"] if runs else 0

        wait_for(lambda: sink_frames() >= 20, 30, "frames at the sink")
        for service in services:  # what `docker compose stop` does: SIGTERM to each
            service.signal(signal.SIGTERM)
        for service in services:
            assert service.process.wait(20) == 0, service.output()[-2000:]
        run = logged_ledger(services[0].output())["outputs"][0]["runs"][-1]
        assert run["complete"] and run["lost"] == 0 and run["frames"] == run["frames_sent"]
    finally:
        for service in services:
            service.stop(timeout=10)
        namespaces.remove()
