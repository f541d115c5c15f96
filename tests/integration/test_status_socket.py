"""A service's status socket answers `arroyo status` and nothing else: a request it does not
understand is dropped unanswered, a request over its size limit closes that connection
unread, sockets of the wrong kind fail their handshake; each is counted (in the answer's
``status_socket``) and logged, and the socket keeps answering. Real sockets, one process."""

from __future__ import annotations

import logging

import pytest
import zmq

from services.status_server import MAX_REQUEST_BYTES, StatusServer, query_status
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def server():
    status = StatusServer("tcp://127.0.0.1:*", lambda: {"frames": 7}, "svc")
    yield status
    status.close()


@pytest.fixture
def rogue():
    opened: list[zmq.Socket] = []

    def connect(kind: int, address: str) -> zmq.Socket:
        socket = zmq.Context.instance().socket(kind)
        socket.linger = 0
        socket.connect(address)
        opened.append(socket)
        return socket

    yield connect
    for socket in opened:
        socket.close(linger=0)


def test_answers_status_only(server, rogue, caplog):
    caplog.set_level(logging.WARNING)
    assert server.bound.startswith("tcp://127.0.0.1:")
    answer = query_status(server.bound)
    assert answer["frames"] == 7 and answer["status_socket"]["requests_refused"] == 0

    asking = rogue(zmq.REQ, server.bound)
    asking.send(b"give me everything")
    wait_for(lambda: server.refused == 1, 10, "the odd request to be counted")
    assert not asking.poll(200)  # never answered (the count above says it was read)
    assert "dropped a request it does not understand" in caplog.text

    big = rogue(zmq.DEALER, server.bound)  # a REQ's envelope, and a request far too long
    big.send_multipart([b"", b"status" + b"x" * (4 * MAX_REQUEST_BYTES)])
    # Two connections closed: query_status's, whose close may be seen only now, and this
    # one's (counting to one could see query_status's alone, and big's handshake after
    # the count of handshakes below was read)
    wait_for(lambda: server.tracker.disconnects >= 2, 10, "the long request's connection "
             "to be closed unread")
    assert server.refused == 1 and not big.poll(200)

    # Sockets of the wrong kind never complete a handshake with a ROUTER. libzmq 4.3 says
    # so as a failed handshake or, when the rogue hangs up first, only as a closed
    # connection: either way no handshake succeeds and the connection is counted.
    tracker = server.tracker
    handshakes, ended = tracker.connects, tracker.disconnects + sum(tracker.refused.values())
    for kind in (zmq.PULL, zmq.SUB, zmq.PUSH, zmq.PUB):
        rogue(kind, server.bound)
    wait_for(lambda: tracker.disconnects + sum(tracker.refused.values()) >= ended + 4, 10,
             "the 4 rogue connections to be closed")
    assert tracker.connects == handshakes

    answer = query_status(server.bound)  # still answering, with the counts
    counts = answer["status_socket"]
    assert counts["requests_refused"] == 1
    assert counts["peers"]["disconnects"] + sum(counts["connections"]["refused"].values()) >= 5


def test_pollers_coming_and_going_are_not_logged(server, caplog):
    """A dashboard asks every second: a line per connection would flood the service's log
    (and once filled a pipe nobody read, blocking the service's logging)."""
    caplog.set_level(logging.INFO)
    for _ in range(5):
        assert query_status(server.bound)["frames"] == 7
    wait_for(lambda: server.tracker.disconnects >= 5, 10, "the pollers' connections to close")
    assert server.tracker.connects >= 5  # seen, counted ...
    peers = [r for r in caplog.records if "peer" in r.getMessage() and r.levelno >= logging.INFO]
    assert peers == [], [r.getMessage() for r in peers]  # ... and not logged
