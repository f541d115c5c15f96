"""PeerTracker counts peers from monitor events (a refused handshake is no peer), and
LagWatch reports or ends a link that falls behind."""

import logging
import threading
import time

import pytest
import zmq

from arroyo_core.errors import ConfigError, FallenBehindError
from arroyo_core.lag import LagWatch
from arroyo_core.transports.zmq.peers import PeerTracker

ENDPOINT = "tcp://127.0.0.1:5555"


def test_peers_come_and_go_and_a_refused_handshake_is_not_one(caplog):
    caplog.set_level(logging.INFO)
    tracker = PeerTracker("output push")
    tracker.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, ENDPOINT)
    tracker.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, ENDPOINT)
    tracker.on_event(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 104, ENDPOINT)
    tracker.on_event(zmq.EVENT_DISCONNECTED, 9, ENDPOINT)  # the refused one
    assert tracker.stats() == {"peers": 2, "connects": 2, "disconnects": 0, "reconnects": 0}
    tracker.on_event(zmq.EVENT_DISCONNECTED, 7, ENDPOINT)
    tracker.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, ENDPOINT)
    assert tracker.stats() == {"peers": 2, "connects": 3, "disconnects": 1, "reconnects": 1}
    assert "disconnected" in caplog.text and "connected again" in caplog.text


def test_wait_for_peers_returns_when_they_come_and_gives_up_on_timeout(caplog):
    caplog.set_level(logging.INFO)
    tracker = PeerTracker("output push")
    assert not tracker.wait_for(1, timeout=0.2)
    assert "only 0 of 1 expected peer(s)" in caplog.text
    later = threading.Timer(0.1, tracker.on_event,
                            (zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, ENDPOINT))
    later.start()
    assert tracker.wait_for(1, timeout=5)
    later.join()
    assert "waiting for 1 expected peer(s)" in caplog.text
    assert not tracker.wait_for(2, timeout=0, cancelled=lambda: True)


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
