"""Fixtures for the integration tests: in-process senders and receivers on real sockets,
and real supervisord runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import Supervisor
from harness import Receiver

from arroyo_core.link import ZmqPublisher


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
    """Factory of supervisord runs of a chain file (deploy_support.Supervisor), each in its
    own directory under ``tmp_path``; shut down, children and all, at teardown."""
    started: list[Supervisor] = []

    def start(chain_file: Path) -> Supervisor:
        started.append(Supervisor(tmp_path / f"supervisor{len(started)}", chain_file))
        return started[-1]

    yield start
    for item in started:
        item.stop()
