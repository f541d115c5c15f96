"""A frame over the socket's MAXMSGSIZE: what libzmq really does, and what the ledger says.

libzmq reads a frame's size before the frame and, over MAXMSGSIZE, closes the connection
(a protocol error): the frame is never allocated, and whatever else was in flight on that
connection is lost with it. On the *connecting* side (an input ``>tcp://...``, Arroyo's
default) libzmq does not reconnect after a protocol error, so the listener connects again
itself. The service must stay up, count the dropped connection, and account for every
message that did not arrive as missing.

MAXMSGSIZE is FRAME_CEILING times the listener's max_message_bytes: a frame of exactly
that size still arrives (and is rejected as malformed ``size``, the connection kept), one
byte more drops the connection, whichever side binds (docs/protocol.md, section 5.1).
"""

from __future__ import annotations

import itertools
import queue
import time

import numpy as np
import pytest
import zmq

from arroyo_core.message import Event, Start, Stop
from arroyo_core.transports.zmq.receiver import FRAME_CEILING
from arroyo_core.wire import encode
from services.status_server import query_status
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

LIMIT = 16 * 1024  # the listener's max_message_bytes
OVERSIZED = 64 * LIMIT  # over MAXMSGSIZE, which is a multiple of max_message_bytes


def test_a_frame_over_maxmsgsize_drops_one_connection_not_the_service(service, ipc, zmq_socket,
                                                                        tmp_path):
    stats = ipc()
    upstream = zmq_socket(zmq.PUSH)
    upstream.sndtimeo = 10_000  # a send that cannot go fails the test instead of hanging
    endpoint = f"tcp://127.0.0.1:{upstream.bind_to_random_port('tcp://127.0.0.1')}"
    config = tmp_path / "sink.toml"
    config.write_text(f'sink = "stats"\nin = ">{endpoint}"\nstatus = "{stats}"\n'
                      f"[in_options]\nmax_message_bytes = {LIMIT}\n")
    sink = service("publisher", "-c", str(config), name="sink")
    seq = 0

    def send(message):
        nonlocal seq
        upstream.send_multipart(encode(message, src="upstream", seq=seq), copy=False)
        seq += 1

    def event(frame, nbytes=256):
        return Event({"run": "r", "frame": frame}, {"image": np.zeros(nbytes, np.uint8)})

    def link():
        return query_status(stats)["input"]

    send(Start({"run": "r"}))
    for frame in range(10):
        send(event(frame))
    wait_for(lambda: link()["received"] == 11, what="the first 10 frames")

    send(event(10, OVERSIZED))  # seq 11
    for frame in range(11, 16):  # in flight behind it, on the connection libzmq drops
        send(event(frame))
    wait_for(lambda: link()["connections"]["dropped"] == 1, what="the listener to reconnect")
    for frame in range(16, 26):
        send(event(frame))
    send(Stop({"run": "r", "frames_sent": 26}))

    def complete_run():
        runs = query_status(stats)["outputs"][0]["runs"]
        return runs and runs[-1]["complete"] and runs[-1]
    run = wait_for(complete_run, what="the run's Stop")

    assert sink.process.poll() is None, "the service died"
    ledger = link()
    sender = ledger["senders"]["upstream"]
    assert ledger["connections"]["dropped"] == 1
    assert sender["next_seq"] == seq == 28
    # every message either arrived or is reported missing, starting with the oversized one
    assert sender["received"] + sender["missing"] == seq
    assert sender["missing_ranges"][0][0] == 11 and sender["missing"] >= 1
    assert sender["received"] >= 1 + 10 + 10 + 1  # Start, before, after, Stop
    assert run["frames"] == 26 - sender["missing"] and run["lost"] == sender["missing"]
    assert "libzmq closed the connection" in sink.output()
    assert "MAXMSGSIZE" in sink.output()


@pytest.mark.parametrize("listener_binds", [False, True],
                         ids=["listener-connects", "listener-binds"])
def test_the_frame_ceiling_is_where_a_connection_drops(receiver, zmq_socket, listener_binds):
    ceiling = FRAME_CEILING * LIMIT
    upstream = zmq_socket(zmq.PUSH)
    upstream.sndtimeo = 10_000  # a send that cannot go fails the test instead of hanging
    if listener_binds:
        rx = receiver("@tcp://127.0.0.1:*", max_message_bytes=LIMIT)
        upstream.connect(rx.bound)
    else:
        port = upstream.bind_to_random_port("tcp://127.0.0.1")
        rx = receiver(f">tcp://127.0.0.1:{port}", max_message_bytes=LIMIT)
    seq = itertools.count()

    def send(message):
        upstream.send_multipart(encode(message, src="upstream", seq=next(seq)), copy=False)

    def event(frame, nbytes=256):
        return Event({"run": "r", "frame": frame}, {"image": np.zeros(nbytes, np.uint8)})

    send(Start({"run": "r"}))  # seq 0
    send(event(0))
    assert [m.kind for m in rx.take(2)] == ["start", "event"]

    send(event(1, ceiling))  # seq 2: at the ceiling, libzmq takes it and the link rejects it
    send(event(2))
    assert rx.get().meta["frame"] == 2  # the same connection goes on
    link = rx.listener.stats()
    assert link["malformed"] == {"size": 1}
    assert link["connections"]["dropped"] == 0 and link["peers"]["disconnects"] == 0

    send(event(3, ceiling + 1))  # seq 4: one byte over, libzmq drops the connection
    # What is sent before the sender sees the connection gone is lost with it: send until
    # one arrives over the new connection.
    frame, deadline = 4, time.monotonic() + 20
    while True:
        send(event(frame))
        frame += 1
        try:
            arrived = rx.messages.get(timeout=0.5)
            break
        except queue.Empty:
            assert time.monotonic() < deadline, f"nothing after the drop: {rx.listener.stats()}"
    send(Stop({"run": "r", "frames_sent": frame}))
    assert rx.get().kind == "stop"

    # the monitor thread may report the new connection after its first message
    wait_for(lambda: rx.listener.stats()["peers"]["reconnects"] == 1, what="the reconnect")
    link = rx.listener.stats()
    sender = link["senders"]["upstream"]
    assert link["malformed"] == {"size": 1}  # a dropped frame is not a malformed message
    assert link["connections"]["dropped"] == (0 if listener_binds else 1)  # we reconnected
    assert link["peers"]["disconnects"] == 1
    assert sender["next_seq"] == next(seq)
    assert sender["received"] + sender["missing"] == sender["next_seq"]
    assert sender["missing_ranges"][0] == [2, 2]  # the one rejected as too large
    # the oversized frame and what followed it on that connection (frame n has seq n + 1)
    assert sender["missing_ranges"][1] == [4, arrived.meta["frame"]]
