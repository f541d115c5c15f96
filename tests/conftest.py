"""Fixtures that own every socket, process and file they create, and clean them up. The
helpers behind them, which tests import too, are the modules of ``tests.support``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import zmq

from services.processes import ServiceProcess
from tests.support.addresses import IpcDirectory

# open_sockets fails a test that leaves a ZeroMQ socket open (an autouse fixture);
# pytester runs pytest on a test file, for the tests of that check.
pytest_plugins = ["tests.support.open_sockets", "pytester"]


LEFT_OUT = pytest.StashKey[int]()  # how many slow tests a run left out


@pytest.hookimpl(trylast=True)  # after -m has chosen
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A bare `pytest` leaves the slow tests out (kills under supervisord, soaks, benches:
    about half of the suite's time), so that a newcomer's first run takes minutes.
    `pytest -m slow` runs them, as does naming a test's file or directory; CI runs both."""
    if config.args_source == pytest.Config.ArgsSource.ARGS or "slow" in config.option.markexpr:
        return
    slow, kept = [], []
    for item in items:
        (slow if item.get_closest_marker("slow") else kept).append(item)
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = kept
        config.stash[LEFT_OUT] = len(slow)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if config.stash.get(LEFT_OUT, 0):
        terminalreporter.write_line(
            f"{config.stash[LEFT_OUT]} slow tests left out of this run: "
            "`python -m pytest -m slow` runs them")


@pytest.fixture
def ipc() -> Iterator[IpcDirectory]:
    """Fresh ``ipc://`` addresses, ``ipc()`` or ``ipc("name")``, in a short directory of
    this test's own (no other test can take them), removed at teardown."""
    directory = IpcDirectory()
    yield directory
    directory.remove()


@pytest.fixture
def zmq_socket() -> Iterator[Callable[[int], zmq.Socket]]:
    """Factory of sockets closed with linger=0 at teardown."""
    sockets: list[zmq.Socket] = []

    def make(kind: int) -> zmq.Socket:
        socket = zmq.Context.instance().socket(kind)
        socket.linger = 0
        sockets.append(socket)
        return socket

    yield make
    for socket in sockets:
        socket.close(linger=0)


@pytest.fixture
def service() -> Iterator[Callable[..., ServiceProcess]]:
    """Factory of ``arroyo ROLE ...`` child processes, stopped (then killed) at teardown."""
    started: list[ServiceProcess] = []

    def start(role: str, *args: str, name: str | None = None, ready: bool = True,
              env: dict[str, str] | None = None) -> ServiceProcess:
        process = ServiceProcess(role, list(args), name=name, env=env)
        started.append(process)
        if ready:
            process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop(timeout=10)
