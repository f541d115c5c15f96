"""README.md's first shell block, run as written on a stock Debian 12 system.

A clean clone of this checkout (committed files only) goes into a pristine Debian 12 container:
debootstrap's minbase with python3, python3-venv and python3-pip, nothing else, Debian's
EXTERNALLY-MANAGED marker kept (deploy/base-image.sh, built once per machine). Each command of
README.md's first fenced shell block, read from the clone's README and not retyped here, runs
there in order with ``bash -c``, as root and as a normal user. Each must exit 0; the demo must
end with ``lost 0`` and the test command must pass tests.

The block's test command runs as the normal user only (root runs the setup and the demo), and
there with the unit tests only: the whole suite, integration tests and their servers
included, runs on the host in CI (.ci/run), and twice would take CI past 30 minutes.
The container reaches the package index with the host's pip settings (host_pip_settings).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.containers import (
    Container,
    base_image,
    host_pip_settings,
    require_podman,
)
from tests.support.containers import clean_clone as clone_checkout

ROOT = Path(__file__).resolve().parents[2]
USERS = {"root": "/root", "newcomer": "/home/newcomer"}  # user -> home
DEMO_SUMMARY = re.compile(r"summary: sent (\d+), received (\d+), lost 0\b")


def readme_commands(readme: Path) -> list[str]:
    """The shell commands of ``readme``'s first fenced code block (bash, sh, shell, console or
    no language), trailing ``# comments`` and ``$`` prompts removed: what a reader types, and
    what ../shared/tools/try-as-newcomer.sh runs."""
    blocks = re.findall(r"```(?:bash|sh|shell|console)?\n(.*?)```", readme.read_text(), re.S)
    commands = []
    for line in blocks[0].splitlines() if blocks else []:
        line = line.split(" #")[0].strip().lstrip("$ ").strip()
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


@pytest.fixture(scope="module")
def stock_debian() -> str:
    """A stock Debian 12 image (built on first use, then cached on this machine)."""
    require_podman()
    return base_image()


@pytest.fixture
def clean_clone(tmp_path: Path) -> Path:
    """``git clone`` of this checkout: what a newcomer gets, without local files."""
    return clone_checkout(tmp_path / "arroyo")


@pytest.fixture
def container() -> Iterator[Callable[..., Container]]:
    """Factory of running containers, removed at teardown."""
    made: list[Container] = []

    def make(image: str, env: dict[str, str] | None = None,
             volumes: list[str] | None = None) -> Container:
        made.append(Container(image, env, volumes))
        return made[-1]

    yield make
    for item in made:
        item.remove()


def test_readme_block_has_setup_demo_and_tests() -> None:
    commands = readme_commands(ROOT / "README.md")
    assert 3 <= len(commands) <= 6, commands
    assert any("arroyo demo" in command for command in commands), commands
    assert any("pytest" in command for command in commands), commands


@pytest.mark.integration
@pytest.mark.container
def test_base_image_is_stock_debian(stock_debian: str, container) -> None:
    """The image has what makes the README's old first line fail on a stock system: a
    python3 with no `python`, and pip refusing to install into the system's Python."""
    box = container(stock_debian)
    version = box.exec("python3 --version")
    assert version.returncode == 0 and version.stdout.startswith("Python 3.11."), version.stdout
    assert box.exec("command -v python").returncode != 0
    refused = box.exec("python3 -m pip install msgpack")
    assert refused.returncode != 0
    assert "externally-managed-environment" in refused.stdout, tail(refused.stdout)


@pytest.mark.integration
@pytest.mark.container
@pytest.mark.timeout(3000)
@pytest.mark.parametrize("user", list(USERS))
def test_readme_first_block_on_stock_debian(stock_debian: str, clean_clone: Path, container,
                                            user: str) -> None:
    commands = readme_commands(clean_clone / "README.md")
    assert commands, "README.md has no fenced shell block"
    env, volumes = host_pip_settings()
    box = container(stock_debian, env, [*volumes, f"{clean_clone}:/src:ro"])
    if user != "root":
        made = box.exec(f"useradd --create-home --shell /bin/bash {user}")
        assert made.returncode == 0, made.stdout
    workdir = f"{USERS[user]}/arroyo"
    copied = box.exec(f"cp -r /src {workdir}", user=user)
    assert copied.returncode == 0, copied.stdout

    for command in commands:
        if "pytest" in command and user == "root":
            # The whole suite runs once in a container, as the newcomer (the case of the
            # README: no root), and on the host; twice more would take CI past 30 minutes.
            print(f"[{user}] {command}: run as newcomer only")
            continue
        if "pytest" in command:
            # The integration tests run on the host in CI (.ci/run), with the servers they
            # need; here the command's own collection, and the unit tests, as the newcomer.
            command += " -q -m 'not integration and not container'"
        started = time.monotonic()
        result = box.exec(command, user=user, workdir=workdir, timeout=1200)
        took = time.monotonic() - started
        print(f"[{user}] {command}: exit {result.returncode} in {took:.0f} s")
        assert result.returncode == 0, (
            f"`{command}` as {user} on stock Debian 12 exited {result.returncode}:\n"
            f"{tail(result.stdout)}")
        last = result.stdout.rstrip().splitlines()[-1] if result.stdout.strip() else ""
        if "arroyo demo" in command:
            summary = DEMO_SUMMARY.search(last)
            assert summary, f"the demo did not end with `lost 0`:\n{tail(result.stdout)}"
            assert int(summary[1]) == int(summary[2]) > 0, last
        if "pytest" in command:
            assert re.search(r"\b\d+ passed\b", last), tail(result.stdout)
