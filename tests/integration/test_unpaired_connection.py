"""A connection that closes before its handshake, with no reason given, is connected again.

libzmq reports nothing when a handshake fails because the socket types do not pair (a
PULL connected to a PULL): it closes the connection and never retries it. A TCP connection
that reached itself ends the same way, and one can: a link that connects to a port before
anything binds it may be given that very port as its own. Seen once in CI: the test's
receiver connected to a chain's out before the chain bound it and heard nothing for 90 s.

Here the far end is first a socket of the wrong type, then the right one at the same
port: the link must count and log the refusal, and then receive (or send) everything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from arroyo_core.link import ZmqPublisher
from arroyo_core.message import Event, Start, Stop
from arroyo_core.transports.zmq.connections import ConnectionTracker
from arroyo_core.transports.zmq.reasons import SELF_REASON, UNPAIRED_REASON
from arroyo_core.wire import encode
from services.processes import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FRAMES = 5


def run() -> list:
    return [Start({"run": "r"}),
            *(Event({"run": "r", "frame": i}, {"image": np.full(16, i, np.uint8)})
              for i in range(FRAMES)),
            Stop({"run": "r", "frames_sent": FRAMES})]


def unpaired(stats: dict[str, Any]) -> bool:
    """Whether a link's ledger counts a connection that closed before its handshake."""
    return stats["connections"]["refused"].get(UNPAIRED_REASON, 0) >= 1


def wrong_then_right(zmq_socket, port: int, wrong: int, right: int,
                     refused: Callable[[], bool]) -> zmq.Socket:
    """Bind a ``wrong`` socket at ``port`` until ``refused()``, then a ``right`` one."""
    endpoint = f"tcp://127.0.0.1:{port}"
    impostor = zmq_socket(wrong)
    impostor.bind(endpoint)
    wait_for(refused, 10, "the refusal to be counted")
    impostor.close(linger=0)
    far_end = zmq_socket(right)

    def bound() -> bool:  # libzmq's I/O thread frees the port a moment after close
        try:
            far_end.bind(endpoint)
            return True
        except zmq.ZMQError:
            return False
    wait_for(bound, 10, f"{endpoint} to be free again")
    return far_end


def test_an_input_connects_again_after_its_peer_was_of_the_wrong_type(receiver, zmq_socket):
    port = free_port()
    sink = receiver(f">tcp://127.0.0.1:{port}")
    source = wrong_then_right(zmq_socket, port, zmq.PULL, zmq.PUSH, lambda: unpaired(
        sink.listener.stats()))
    source.sndtimeo = 10_000
    for seq, message in enumerate(run()):
        source.send_multipart(encode(message, src="upstream", seq=seq), copy=False)
    got = sink.take(FRAMES + 2)
    assert [m.kind for m in got] == ["start", *["event"] * FRAMES, "stop"]
    assert [int(m.payload["image"][0]) for m in got[1:-1]] == list(range(FRAMES))
    # the monitor reports the handshake in its own thread, maybe after the messages
    peers = wait_for(lambda: (p := sink.listener.stats()["peers"])["connects"] and p, 10,
                     "the handshake to be reported")
    assert peers["connects"] == 1 and peers["disconnects"] == 0  # the refusal was no peer


def test_an_output_connects_again_after_its_peer_was_of_the_wrong_type(zmq_socket):
    port = free_port()
    sender = ZmqPublisher(f">tcp://127.0.0.1:{port}")
    sender.open()
    sending = threading.Thread(target=lambda: [sender.publish(m) for m in run()], daemon=True)
    try:
        socket = sender.sender.socket

        def refused() -> bool:
            # and libzmq has removed the refused connection's queue (it does so a moment
            # after it reports the close): messages sent into it before then are lost
            return unpaired(sender.sender.status()) and not (
                socket.getsockopt(zmq.EVENTS) & zmq.POLLOUT)
        sink = wrong_then_right(zmq_socket, port, zmq.PUSH, zmq.PULL, refused)
        sending.start()  # its first send waits for the link to connect again
        sink.rcvtimeo = 10_000
        # each header's kind, read as docs/protocol.md (section 2) says
        kinds = [msgpack.unpackb(sink.recv_multipart()[0])["kind"] for _ in range(FRAMES + 2)]
        assert kinds == ["start", *["event"] * FRAMES, "stop"]
        sending.join(10)
        assert not sending.is_alive()
    finally:
        sender.abandon()  # a failed test must not wait for a peer at close
        sender.close()


def test_a_connection_that_reaches_itself_is_closed_and_is_no_peer(zmq_socket):
    """A DEALER pairs with a DEALER, so one that reached itself would take its own
    messages for a peer's. libzmq's ``source;destination`` form makes that connection at
    will: from a port to the same port, with nothing listening there."""
    port = free_port()
    tracker = ConnectionTracker("output test")
    dealer = zmq_socket(zmq.DEALER)
    tracker.start(dealer)
    try:
        dealer.connect(f"tcp://127.0.0.1:{port};127.0.0.1:{port}")
        wait_for(lambda: tracker.stats()["connections"]["refused"].get(SELF_REASON, 0) >= 2,
                 10, "the connection, and libzmq's next one, to be closed")
        assert tracker.stats()["peers"]["connects"] == 0
    finally:
        tracker.stop(dealer)
