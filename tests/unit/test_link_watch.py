"""ConnectionTracker counts peers from monitor events (a refused handshake is no peer),
refused handshakes by reason and dropped connections, each event once; LagWatch reports or
ends a link that falls behind."""

import logging
import threading
import time

import pytest
import zmq

from arroyo_core.errors import ConfigError, FallenBehindError
from arroyo_core.lag import LagWatch
from arroyo_core.transports.zmq import connections
from arroyo_core.transports.zmq.connections import ConnectionTracker
from arroyo_core.transports.zmq.reasons import AUTH_REASON

ENDPOINT = "tcp://127.0.0.1:5555"


def test_peers_come_and_go_and_a_refused_handshake_is_not_one(caplog):
    caplog.set_level(logging.INFO)
    tracker = ConnectionTracker("output push")
    tracker.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, ENDPOINT)
    tracker.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, ENDPOINT)
    tracker.on_event(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 104, ENDPOINT)
    tracker.on_event(zmq.EVENT_DISCONNECTED, 9, ENDPOINT)  # the refused one
    assert tracker.stats()["peers"] == {"peers": 2, "connects": 2, "disconnects": 0,
                                        "reconnects": 0}
    tracker.on_event(zmq.EVENT_DISCONNECTED, 7, ENDPOINT)
    tracker.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, ENDPOINT)
    assert tracker.stats()["peers"] == {"peers": 2, "connects": 3, "disconnects": 1,
                                        "reconnects": 1}
    assert "disconnected" in caplog.text and "connected again" in caplog.text


def test_wait_for_peers_returns_when_they_come_and_gives_up_on_timeout(caplog):
    caplog.set_level(logging.INFO)
    tracker = ConnectionTracker("output push")
    assert not tracker.wait_for(1, timeout=0.2)
    assert "only 0 of 1 expected peer(s)" in caplog.text
    later = threading.Timer(0.1, tracker.on_event,
                            (zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, ENDPOINT))
    later.start()
    assert tracker.wait_for(1, timeout=5)
    later.join()
    assert "waiting for 1 expected peer(s)" in caplog.text
    assert not tracker.wait_for(2, timeout=0, cancelled=lambda: True)


GONE_FD = 1_000_000  # a descriptor number no test process has open: its address is unknown


class RecordingSocket:
    """Stands in for the link's socket in reconnect_dropped."""

    def __init__(self):
        self.calls = []

    def disconnect(self, address):
        self.calls.append(("disconnect", address))

    def connect(self, address):
        self.calls.append(("connect", address))


def test_a_refused_handshake_is_counted_once_logged_once_and_no_peer(caplog):
    tracker = ConnectionTracker("input pull")
    for fd in (GONE_FD, GONE_FD + 1):  # two refused connections from one (unknown) host
        tracker.on_event(zmq.EVENT_ACCEPTED, fd, ENDPOINT)
        tracker.on_event(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                         zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH, ENDPOINT)
        tracker.on_event(zmq.EVENT_DISCONNECTED, fd, ENDPOINT)
    stats = tracker.stats()
    assert stats["peers"] == {"peers": 0, "connects": 0, "disconnects": 0, "reconnects": 0}
    (reason,) = stats["connections"]["refused"]
    assert stats["connections"]["refused"][reason] == 2 and "security mismatch" in reason
    assert stats["connections"]["dropped"] == 0
    refusals = [r.message for r in caplog.records if "refused a connection" in r.message]
    assert len(refusals) == 1 and "a peer gone before its address was read" in refusals[0]
    assert tracker.connections() == {}


def test_a_client_refused_by_the_allow_list_logs_it_once_and_is_not_dropped(caplog):
    tracker = ConnectionTracker("output push")
    tracker.on_event(zmq.EVENT_CONNECTED, GONE_FD, ENDPOINT)
    tracker.on_event(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, ENDPOINT)
    tracker.on_event(zmq.EVENT_DISCONNECTED, GONE_FD, ENDPOINT)
    assert tracker.stats()["connections"] == {"dropped": 0, "refused": {AUTH_REASON: 1}}
    assert tracker.stats()["peers"]["disconnects"] == 0
    assert [r.message for r in caplog.records if AUTH_REASON in r.message] == [
        f"output push: the server at {ENDPOINT} refused our key: {AUTH_REASON}; "
        "further ones of this kind are only counted"]
    socket = RecordingSocket()
    tracker.reconnect_dropped(socket, ENDPOINT)
    assert socket.calls == []  # a refused handshake is not retried, nor should it be


def test_a_dropped_connection_of_ours_is_connected_again_unless_libzmq_retries(
        caplog, monkeypatch):
    monkeypatch.setattr(connections, "RECONNECT_AFTER_S", 0.0)
    tracker = ConnectionTracker("input pull", max_frame_bytes=1024)
    socket = RecordingSocket()
    tracker.on_event(zmq.EVENT_CONNECTED, GONE_FD, ENDPOINT)
    tracker.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, ENDPOINT)
    tracker.on_event(zmq.EVENT_DISCONNECTED, GONE_FD, ENDPOINT)
    tracker.on_event(zmq.EVENT_CONNECT_RETRIED, 100, ENDPOINT)  # libzmq retries this one
    tracker.reconnect_dropped(socket, ENDPOINT)
    assert socket.calls == [] and tracker.stats()["connections"]["dropped"] == 0

    tracker.on_event(zmq.EVENT_CONNECTED, GONE_FD, ENDPOINT)
    tracker.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, ENDPOINT)
    tracker.on_event(zmq.EVENT_DISCONNECTED, GONE_FD, ENDPOINT)  # and this one it does not
    tracker.reconnect_dropped(socket, ENDPOINT)
    tracker.reconnect_dropped(socket, ENDPOINT)  # once only
    assert socket.calls == [("disconnect", ENDPOINT), ("connect", ENDPOINT)]
    stats = tracker.stats()
    assert stats["connections"] == {"dropped": 1, "refused": {}}
    assert stats["peers"] == {"peers": 0, "connects": 2, "disconnects": 2, "reconnects": 1}
    assert "MAXMSGSIZE of 1024 bytes" in caplog.text

def test_lag_is_reported_and_with_disconnect_ends_the_link(caplog):
    watch = LagWatch("input sub", max_lag=0.5)
    watch.observe(time.time())
    assert watch.late == 0
    watch.observe(time.time() - 2)
    assert watch.late == 1 and watch.worst >= 2 and "falling behind" in caplog.text
    strict = LagWatch("input sub", max_lag=0.5, on_lag="disconnect")
    with pytest.raises(FallenBehindError):
        strict.observe(time.time() - 2)
    with pytest.raises(ConfigError):
        LagWatch("input sub", max_lag=1, on_lag="explode")
