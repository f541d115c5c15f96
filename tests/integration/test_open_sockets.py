"""The check that fails a test leaving ZeroMQ sockets or contexts open (tests.support.
open_sockets) catches each way of leaving one, names it, and passes what closes in time."""

from __future__ import annotations

import pytest

from tests.support import open_sockets

pytestmark = pytest.mark.integration

CONFTEST = """
import pytest
import zmq

pytest_plugins = ["tests.support.open_sockets"]


@pytest.fixture(scope="module")
def module_socket():
    yield zmq.Context.instance().socket(zmq.PAIR)  # never closed
"""

TESTS = """
import threading
import time

import zmq


def test_leaves_a_bound_push_open():
    zmq.Context.instance().socket(zmq.PUSH).bind("inproc://left-open")


def test_drops_a_sub_without_closing_it():
    zmq.Context.instance().socket(zmq.SUB)  # the garbage collector would close it quietly


def test_leaves_its_own_context_unterminated():
    zmq.Context()


def test_closes_everything():
    context = zmq.Context()
    context.socket(zmq.PULL).close()
    context.term()


def test_a_thread_closes_a_moment_later():
    socket = zmq.Context.instance().socket(zmq.REP)
    threading.Timer(0.1, socket.close).start()


def test_uses_a_module_fixture(module_socket):
    pass
"""


@pytest.fixture
def outcomes(pytester, monkeypatch):
    """The outcome of each test of TESTS, and the report, run by pytest in this process."""
    monkeypatch.setattr(open_sockets, "GRACE_S", 0.3)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_leaks=TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    return result.parseoutcomes(), result.stdout.str()


def test_a_test_that_leaves_a_socket_or_context_open_fails_naming_it(outcomes, pytester):
    counts, report = outcomes
    assert counts["passed"] == 6  # every test body passes; the check fails three at teardown
    assert counts["errors"] == 4  # ... and the session, for the module fixture's socket
    for name, what in (("test_leaves_a_bound_push_open", "socket PUSH made at"),
                       ("test_drops_a_sub_without_closing_it", "socket SUB made at"),
                       ("test_leaves_its_own_context_unterminated", "context made at")):
        section = report.split(f"ERROR at teardown of {name} ")[1].split("\n")[1:3]
        assert section[0] == "the test left ZeroMQ sockets or contexts open:", section
        assert section[1].startswith(f"  {what} {pytester.path / 'test_leaks.py'}:"), section
    assert ("made outside any test were left open:\n  socket PAIR made at "
            f"{pytester.path / 'conftest.py'}:") in report
    assert "ERROR at teardown of test_closes_everything" not in report
    assert "ERROR at teardown of test_a_thread_closes_a_moment_later" not in report
