"""Fixtures for the integration tests: in-process senders and receivers on real sockets,
real supervisord runs, and a real redis-server."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from arroyo_core.link import ZmqPublisher
from tests.support.arroyo_run import ChainRun
from tests.support.chain_ends import Feeder
from tests.support.in_process import Running
from tests.support.receiver import Receiver
from tests.support.requirements import skip_unless
from tests.support.supervisord import Supervisor
from tests.support.waiting import wait_or_kill


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """Factory of threaded ZmqListeners (``Receiver``), stopped and closed at teardown."""
    made: list[Receiver] = []

    def make(endpoint: str, pattern: str = "pull", **options: Any) -> Receiver:
        made.append(Receiver(endpoint, pattern, **options))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture
def sender() -> Iterator[Callable[..., ZmqPublisher]]:
    """Factory of opened ZmqPublishers, closed without waiting at teardown."""
    made: list[ZmqPublisher] = []

    def make(endpoint: str, pattern: str = "push", **options: Any) -> ZmqPublisher:
        publisher = ZmqPublisher(endpoint, pattern=pattern, **options)
        publisher.open()
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.abandon()
        publisher.close()


@pytest.fixture
def supervisor(tmp_path) -> Iterator[Callable[[Path], Supervisor]]:
    """Factory of supervisord runs of a chain file (tests.support.supervisord), each in its
    own directory under ``tmp_path``; shut down, children and all, at teardown."""
    started: list[Supervisor] = []

    def start(chain_file: Path) -> Supervisor:
        started.append(Supervisor(tmp_path / f"supervisor{len(started)}", chain_file))
        return started[-1]

    yield start
    for item in started:
        item.stop()


@pytest.fixture
def redis_server(tmp_path) -> Iterator[Any]:
    """A fresh redis-server (password, AOF) on a free port (tests.support.redis_server);
    stopped at teardown. Request it before ``service`` so that services stop while Redis
    is still there."""
    skip_unless(shutil.which("redis-server") is not None, "redis-server is not installed")
    from tests.support.redis_server import RedisServer  # (needs redis-py: tests import it first)

    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def feeder() -> Iterator[Callable[..., Any]]:
    """Factory of Feeders (tests.support.chain_ends) binding a PUSH socket; halted and
    closed at teardown."""
    made: list[Feeder] = []

    def make(address: str, frames: int, rate: float) -> Feeder:
        made.append(Feeder(address, frames, rate))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory) -> Iterator[Any]:
    """One private rabbitmq-server for the session's AMQP tests (it takes seconds to boot;
    tests.support.rabbitmq_server); each test uses queues of its own. Closed at the end."""
    from tests.support.rabbitmq_server import RabbitMQServer, installed

    skip_unless(installed(), "rabbitmq-server is not installed")

    server = RabbitMQServer(tmp_path_factory.mktemp("rabbitmq"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def runtimes() -> Iterator[Callable[..., Running]]:
    """Starts listeners in in-process runtimes (tests.support.in_process); stops them all
    at teardown."""
    started: list[Running] = []

    def start(listener: Any, operator: Any = None,
              publishers: list[Any] | None = None) -> Running:
        started.append(Running(listener, operator, publishers))
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def run_chain() -> Iterator[Callable[..., ChainRun]]:
    """``run_chain(chain_file, env=None)`` starts a :class:`ChainRun`; those still running
    when the test ends are terminated (killed after 30 s)."""
    runs: list[ChainRun] = []

    def start(chain_file: Path, env: dict[str, str] | None = None) -> ChainRun:
        runs.append(ChainRun(chain_file, env))
        return runs[-1]

    yield start
    for run in runs:
        if run.process.poll() is None:
            run.process.terminate()
            wait_or_kill(run.process, 30)
