"""Fixtures that own every socket, process and file they create, and clean them up."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import zmq

from services.processes import ServiceProcess, free_port

REQUIRE_ALL = os.environ.get("ARROYO_REQUIRE_ALL") == "1"


def skip_unless(condition: bool, reason: str) -> None:
    """Skip with ``reason`` when ``condition`` is false, except in CI where it fails."""
    if not condition:
        if REQUIRE_ALL:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def tcp() -> Callable[[], str]:
    """Factory of fresh loopback tcp addresses (``tcp://127.0.0.1:PORT``)."""
    return lambda: f"tcp://127.0.0.1:{free_port()}"


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
