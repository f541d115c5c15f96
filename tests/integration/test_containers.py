"""docker-compose.yml run as users run it: the image built from deploy/Dockerfile, the chain
under a real container engine (podman, runc) and a compose implementation (podman-compose).

The Dockerfile's base, ``python:3.11-slim``, is in no registry this machine reaches; its
stand-in is deploy/python-base.Containerfile on the stock Debian 12 image of
tests/support/containers.py (why it is faithful: see that file). The image is built from a
clean clone (committed files only), as `docker compose up --build` would build it there.

podman 4.3 runs healthchecks from systemd timers, which this machine has not, so compose's
``condition: service_healthy`` is not waited for (podman-compose says so and starts the
services in order); each healthcheck is run here by the engine on request instead
(``podman healthcheck run``).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.status_server import query_status
from tests.support.containers import ENV, build_image, clean_clone, podman, python_image
from tests.support.containers import require_podman as _require_podman
from tests.support.ledgers import logged_ledger
from tests.support.requirements import skip_unless
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.container]

ROOT = Path(__file__).resolve().parents[2]
STATUS = {"source": 6000, "operator": 6001, "sink": 6002}  # ports published on 127.0.0.1
FRAMES = 1000  # deploy/chain.toml's run: 1000 frames at 50 frames/s


def compose_command() -> list[str]:
    found = shutil.which("podman-compose") or str(Path(sys.executable).parent / "podman-compose")
    skip_unless(Path(found).exists(), "needs podman-compose (pip install podman-compose)")
    return [found]


class Compose:
    """A compose project of docker-compose.yml in ``directory``, named ``project``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.project = f"arroyo-test-{secrets.token_hex(3)}"

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run([*compose_command(), "-p", self.project, *args],
                                cwd=self.directory, env=ENV, capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"podman-compose {' '.join(args)}:\n{result.stderr}"
        return result

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def state(self, service: str) -> dict[str, Any]:
        found = podman("inspect", self.container(service), "--format", "{{json .State}}")
        return json.loads(found.stdout)

    def restarts(self, service: str) -> int:
        found = podman("inspect", self.container(service), "--format", "{{.RestartCount}}")
        return int(found.stdout)

    def log(self, service: str) -> str:
        found = podman("logs", self.container(service), check=False)
        return found.stdout + found.stderr

    def down(self) -> None:
        subprocess.run([*compose_command(), "-p", self.project, "down", "-t", "1"],
                       cwd=self.directory, env=ENV, capture_output=True, timeout=120)


def status(service: str) -> dict[str, Any]:
    return query_status(f"tcp://127.0.0.1:{STATUS[service]}", 3.0)


def sink_run() -> dict[str, Any] | None:
    """The sink's latest run, through its published status port."""
    try:
        runs = status("sink")["outputs"][0]["runs"]
    except (TimeoutError, OSError):
        return None
    return runs[-1] if runs else None


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A clean clone, and arroyo-stream:local built from it as compose would build it."""
    _require_podman()
    compose_command()
    work = tmp_path_factory.mktemp("containers")
    clone = clean_clone(work / "arroyo")
    build_image(clone / "deploy" / "Dockerfile", "arroyo-stream:local", clone, work,
                {"BASE": python_image()})
    return clone


@pytest.fixture
def compose(checkout: Path) -> Iterator[Compose]:
    project = Compose(checkout)
    yield project
    project.down()


def test_the_chain_runs_healthy_and_a_killed_operator_is_restarted_and_its_loss_reported(
        compose: Compose) -> None:
    compose("up", "-d", "--no-build")
    wait_for(lambda: (sink_run() or {}).get("frames", 0) >= 100, 90, "frames at the sink")
    for service in STATUS:  # from the host, through the published ports
        assert status(service)["name"] == service, service
        checked = podman("healthcheck", "run", compose.container(service), check=False)
        assert checked.returncode == 0, f"{service}'s healthcheck: {checked.stdout}"
    ran = subprocess.run([sys.executable, "-m", "services", "status",
                          *(f"tcp://127.0.0.1:{port}" for port in STATUS.values())],
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and "sink" in ran.stdout, ran.stdout + ran.stderr

    # A crash: the operator's process killed in its container (the container's process 1
    # is the init that compose's `init: true` asks for; the service is its child).
    init = compose.state("operator")["Pid"]
    child = Path(f"/proc/{init}/task/{init}/children").read_text().split()[0]
    subprocess.run(["kill", "-9", child], check=True)
    wait_for(lambda: compose.restarts("operator") >= 1
             and compose.state("operator")["Status"] == "running", 60,
             "the engine to restart the operator (restart: on-failure)")
    run = wait_for(lambda: (r := sink_run()) and r["complete"] and r, 120, "the run to end")
    assert run["frames_sent"] == FRAMES
    assert run["lost"] == FRAMES - run["frames"] >= 0, run  # the true loss, reported
    print(f"\nkilled operator restarted by the engine; run: {run['frames']} of {FRAMES} "
          f"frames, lost {run['lost']} {run.get('lost_ranges', '')}")


@pytest.mark.parametrize("when", ["starting", "alone", "mid-run"])
def test_a_stopped_container_exits_0_within_its_grace_period(compose: Compose,
                                                             when: str) -> None:
    """``starting``: SIGTERM while the operator is still importing; ``alone``: the
    operator up with neither its source nor its sink; ``mid-run``: the whole chain,
    stopped by ``compose stop`` while frames flow, losing none."""
    services = ["operator"] if when != "mid-run" else list(STATUS)
    compose("up", "-d", "--no-build", *(["--no-deps", "operator"] if when != "mid-run" else []))
    if when == "alone":
        wait_for(lambda: status("operator")["ready"], 60, "the operator to be ready")
    elif when == "mid-run":
        wait_for(lambda: (sink_run() or {}).get("frames", 0) >= 100, 90, "frames flowing")
    began = time.monotonic()
    compose("stop", timeout=120)
    took = time.monotonic() - began
    grace = 15  # docker-compose.yml's stop_grace_period
    assert took < grace, f"compose stop took {took:.1f} s"
    for service in services:
        state = compose.state(service)
        assert state["Status"] == "exited" and state["ExitCode"] == 0, (service, state)
    if when == "mid-run":
        ledger = logged_ledger(compose.log("sink"))
        run = ledger["outputs"][0]["runs"][-1]
        assert run["frames"] == run["frames_sent"] > 0 and run["lost"] == 0, run
