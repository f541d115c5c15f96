"""A PUB link sends nothing into the void: whenever fewer than its expected subscribers are
there (at a run's start, after the sender restarted mid-run, when they all went away), a
send waits for them, within the link's overflow policy and peer_timeout, and what it does
drop is counted."""

from __future__ import annotations

import threading

import msgpack
import pytest
import zmq

from arroyo_core.message import Event, Start, Stop
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def subscriber(zmq_socket, address: str) -> zmq.Socket:
    socket = zmq_socket(zmq.SUB)
    socket.subscribe(b"arroyo")
    socket.rcvtimeo = 10_000
    socket.connect(address)
    return socket


def frames_of(socket: zmq.Socket, count: int) -> list[int | str]:
    """The next ``count`` messages' frame numbers (or kind, for Start and Stop)."""
    got: list[int | str] = []
    for _ in range(count):
        header = msgpack.unpackb(socket.recv_multipart()[1], raw=False)
        got.append(header["meta"]["frame"] if header["kind"] == "event" else header["kind"])
    return got


def gone(pub) -> bool:
    """The subscriber's connection has closed (its unsubscription waits on the socket, read
    by the next send)."""
    return pub.status().transport["peers"]["peers"] == 0


def publish_in_thread(publisher, messages) -> threading.Thread:
    thread = threading.Thread(target=lambda: [publisher.publish(m) for m in messages],
                              daemon=True)
    thread.start()
    return thread


def events(frames) -> list[Event]:
    return [Event({"run": "r", "frame": frame}, {"x": b"1"}) for frame in frames]


def test_a_pub_whose_subscribers_went_away_mid_run_waits_until_they_are_back(
        sender, zmq_socket, ipc):
    address = ipc()
    pub = sender("@" + address, pattern="pub")
    first = subscriber(zmq_socket, address)
    publish_in_thread(pub, [Start({"run": "r"}), *events(range(20))]).join(10)
    assert frames_of(first, 21) == ["start", *range(20)]

    first.close(linger=0)
    wait_for(lambda: gone(pub), 10, "the subscriber's connection to close")
    thread = publish_in_thread(pub, [*events(range(20, 40)), Stop({"run": "r"})])
    wait_for(lambda: pub.status().transport["held"] >= 1, 10, "the send to be held")
    assert thread.is_alive() and pub.status().sent == 21  # waiting, not sending into the void

    second = subscriber(zmq_socket, address)
    assert frames_of(second, 21) == [*range(20, 40), "stop"]
    thread.join(10)
    status = pub.status()
    assert status.sent == 42 and status.dropped == {}
    assert status.run_ledger is not None and status.run_ledger[0].seen == 40


def test_a_pub_restarted_mid_run_waits_for_its_subscriber_to_reconnect(
        sender, zmq_socket, ipc):
    """What a stage killed and restarted by supervisor does: the new sender has no Start
    to wait at, and its subscriber is still reconnecting when the first events come."""
    address = ipc()
    before = sender("@" + address, pattern="pub")
    sub = subscriber(zmq_socket, address)
    publish_in_thread(before, [Start({"run": "r"}), *events(range(10))]).join(10)
    assert frames_of(sub, 11) == ["start", *range(10)]
    before.abandon()
    before.close()

    after = sender("@" + address, pattern="pub")  # bound again, a new sender id
    thread = publish_in_thread(after, [*events(range(10, 30)), Stop({"run": "r"})])
    assert frames_of(sub, 21) == [*range(10, 30), "stop"]  # none sent before it was back
    thread.join(10)
    assert after.status().dropped == {}


@pytest.mark.parametrize("options,waits", [
    ({"overflow": "drop-newest"}, False),  # the policy: drop what no subscriber takes
    ({"peer_timeout": 0.3}, True),  # wait that long once, then drop until they are back
])
def test_what_a_pub_drops_instead_of_waiting_is_counted(sender, zmq_socket, ipc, options,
                                                        waits):
    address = ipc()
    pub = sender("@" + address, pattern="pub", **options)
    sub = subscriber(zmq_socket, address)
    publish_in_thread(pub, [Start({"run": "r"}), *events(range(5))]).join(10)
    assert frames_of(sub, 6) == ["start", *range(5)]
    sub.close(linger=0)
    wait_for(lambda: gone(pub), 10, "the subscriber's connection to close")
    publish_in_thread(pub, events(range(5, 15))).join(10)
    status = pub.status()
    assert status.dropped == {"no subscriber": 10} and status.sent == 6
    assert status.run_ledger is not None and status.run_ledger[0].dropped == 10
    assert (status.transport["held"] > 0) == waits
