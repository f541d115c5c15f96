"""The supervisord plug-in, on supervisor's own event objects: a program killed after it
said READY has its back-off cleared; one that never got ready, or that said EXIT, keeps it
(the real thing, under supervisord: tests/integration/test_every_loss.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

events = pytest.importorskip("supervisor.events")
from services.supervisor_restarts import RestartsInterface, make_interface  # noqa: E402


class Logger:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warn(self, message: str) -> None:
        self.lines.append(message)


def process(pid: int, name: str = "middle") -> SimpleNamespace:
    return SimpleNamespace(pid=pid, backoff=0, delay=0.0, config=SimpleNamespace(name=name),
                           group=SimpleNamespace(config=SimpleNamespace(name="chain")))


@pytest.fixture
def plugin():
    logger = Logger()
    interface = RestartsInterface(SimpleNamespace(options=SimpleNamespace(logger=logger)))
    interface.subscribe(events)
    yield interface, logger
    events.clear()


def died_within_startsecs(proc: SimpleNamespace) -> None:
    """What supervisor's change_state(BACKOFF) does, then notifies."""
    proc.backoff += 1
    proc.delay = 1e12
    events.notify(events.ProcessStateBackoffEvent(proc, 10))


def say(proc: SimpleNamespace, data: bytes) -> None:
    events.notify(events.ProcessLogStdoutEvent(proc, proc.pid, data))


def test_a_program_killed_after_ready_is_started_again_at_once(plugin):
    interface, logger = plugin
    proc = process(101)
    say(proc, b"2026 middle INFO x: pull input connecting\nREA")
    say(proc, b"DY middle\n2026 middle INFO ...\n")  # READY split between two reads
    died_within_startsecs(proc)
    assert (proc.backoff, proc.delay) == (0, 0)
    assert interface.getRestarts() == {"chain:middle": 1}
    assert "killed" in logger.lines[0] and "chain:middle" in logger.lines[0]
    for pid in range(102, 110):  # killed again and again: never a failed start
        proc.pid = pid
        say(proc, b"READY middle\n")
        died_within_startsecs(proc)
        assert proc.backoff == 0
    assert interface.getRestarts() == {"chain:middle": 9}


@pytest.mark.parametrize("output", [
    b"error: push output: cannot bind tcp://x:1: Address already in use\n",  # exit 2
    b"READY middle\n... stopped; ledger: {}\nEXIT middle 1\n",  # its source failed
    b"READY middle\nEXIT middle 0\n",  # a clean end (supervisor would repeat it: see serve)
    b"",  # killed before it was ready: nothing says its configuration is good
])
def test_everything_else_is_left_to_supervisor(plugin, output):
    interface, _ = plugin
    proc = process(201)
    say(proc, output)
    died_within_startsecs(proc)
    assert proc.backoff == 1 and proc.delay == 1e12
    assert interface.getRestarts() == {}


def test_what_an_earlier_instance_said_does_not_count_for_the_next(plugin):
    interface, _ = plugin
    proc = process(301)
    say(proc, b"READY middle\n")
    events.notify(events.ProcessStateExitedEvent(proc, 20))  # died after startsecs
    proc.pid = 302  # the next instance says nothing before it dies
    died_within_startsecs(proc)
    assert proc.backoff == 1 and interface.instances == {}


def test_the_factory_subscribes_once_and_a_failure_never_reaches_supervisord():
    logger = Logger()
    supervisord = SimpleNamespace(options=SimpleNamespace(logger=logger))
    try:
        first = make_interface(supervisord)
        assert make_interface(supervisord) is first  # one per HTTP server: the same one
        count = len(events.callbacks)
        assert count == 4
        broken = SimpleNamespace(pid=1, config=None, group=None, backoff=0)
        events.notify(events.ProcessLogStdoutEvent(broken, 1, b"READY x\n"))
        events.notify(events.ProcessStateBackoffEvent(broken, 10))  # no config: it fails
        assert "restart plug-in failed" in logger.lines[-1]
    finally:
        events.clear()
