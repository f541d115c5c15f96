"""Reliable links with real sockets, in one process (docs/protocol.md section 12): what a
receiver took and never acknowledged goes again to the next receiver; a full window
applies the overflow policy; a resend never delivers a message twice.

The first receiver here is a raw DEALER socket speaking the protocol as the page writes it
(hello, no acknowledgement), so the page is checked as well as the code."""

from __future__ import annotations

import logging
import threading

import msgpack
import numpy as np
import pytest
import zmq

from arroyo_core.link import InputLink, OutputLink
from arroyo_core.message import Event, Message, Start, Stop
from arroyo_core.reliable import ACK_BYTES
from arroyo_core.transports.zmq.sockets import readable
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _events(count: int) -> list[Message]:
    return [Start({"run": "r"}),
            *(Event({"run": "r", "frame": i}, {"image": np.full(8, i, np.uint16)})
              for i in range(count)),
            Stop({"run": "r", "frames_sent": count})]


def _raw_receiver(address: str, zmq_socket) -> zmq.Socket:
    peer = zmq_socket(zmq.DEALER)
    peer.rcvtimeo = 5000
    peer.connect(address)
    peer.send_multipart([b"hello", b"", b"0"])  # knows nothing: send me everything
    return peer


def _header(frames: list[bytes]) -> dict:
    """The header of a reliable message's frames: inside its carriage (protocol 12.1)."""
    return msgpack.unpackb(msgpack.unpackb(frames[0])[3])


def _pump(link: OutputLink, condition) -> bool:
    link.flush()  # reads what the receiver said, sends what waits
    return condition()


def test_what_a_receiver_never_acknowledged_goes_to_the_next_one(zmq_socket):
    sender = OutputLink("@tcp://127.0.0.1:*", reliable=True, batch=0)
    sender.open()
    receiver = None
    try:
        peer = _raw_receiver(sender.sender.bound.replace("0.0.0.0", "127.0.0.1"), zmq_socket)
        wait_for(lambda: _pump(sender, lambda: sender.sender.peer is not None), 10, "hello")
        for message in _events(20):
            sender.publish(message)
        carriages = []
        for _ in range(22):  # everything, never acknowledged
            frames = peer.recv_multipart()
            carriages.append(msgpack.unpackb(frames[0]))
            assert _header(frames)["seq"] == len(carriages) - 1
        assert carriages[0][:3] == [2, 0, [[sender.src, 0, 0, 1]]]  # version, base, origins
        peer.close(linger=0)  # gone, having finished nothing
        assert sender.status().transport["window"]["held"] == 22

        got: list[Message] = []
        receiver = InputLink(">" + sender.sender.bound.replace("0.0.0.0", "127.0.0.1"),
                             reliable=True)
        receiver.open()

        def deliver(message: Message) -> None:
            got.append(message)
            receiver.handled(message)  # no runtime here: done at once

        thread = threading.Thread(target=receiver.start, args=(deliver,), daemon=True)
        thread.start()
        wait_for(lambda: _pump(sender, lambda: not sender.reliable.window.entries), 10,
                 "every message acknowledged by the second receiver")
        frames = [m.meta["frame"] for m in got if isinstance(m, Event)]
        assert frames == list(range(20)) and got[0].kind == "start" and got[-1].kind == "stop"
        window = sender.status().transport["window"]
        assert window["resends"] == 2 and window["resent"] == 22
        receiver.stop()
        thread.join(5)
        assert receiver.status().transport["reliable"]["duplicates_dropped"] == 0
    finally:
        if receiver is not None:
            receiver.close()
        sender.abandon()
        sender.close()


def test_a_full_window_drops_the_newest_event_and_counts_it(zmq_socket):
    sender = OutputLink("@tcp://127.0.0.1:*", reliable=True, batch=0, window=5,
                        overflow="drop-newest")
    sender.open()
    try:
        peer = _raw_receiver(sender.sender.bound.replace("0.0.0.0", "127.0.0.1"), zmq_socket)
        wait_for(lambda: _pump(sender, lambda: sender.sender.peer is not None), 10, "hello")
        for message in _events(10)[:-1]:  # Start and 10 Events, nothing acknowledged
            sender.publish(message)
        status = sender.status()
        assert status.transport["window"]["held"] == 5  # Start and 4 Events
        assert status.dropped == {"window full": 6} and status.sent == 5
        peer.send_multipart([b"ack", sender.src.encode(), b"2"])  # finished Start, 0, 1
        wait_for(lambda: _pump(sender, lambda: len(sender.reliable.window) == 2), 10, "acks")
        sender.publish(Event({"run": "r", "frame": 10}, {"image": np.zeros(8, np.uint16)}))
        assert sender.status().sent == 6  # room again
    finally:
        sender.abandon()
        sender.close()


def test_what_is_not_an_answer_is_counted_logged_once_and_ignored(zmq_socket, caplog):
    sender = OutputLink("@tcp://127.0.0.1:*", reliable=True, batch=0)
    sender.open()
    try:
        peer = zmq_socket(zmq.DEALER)
        peer.rcvtimeo = 5000
        peer.connect(sender.sender.bound.replace("0.0.0.0", "127.0.0.1"))
        junk = [[b"nonsense"], [b"ack", b"src", b"12x"], [b"hello", b"", b"0", b"more"]]
        for frames in junk * 5:
            peer.send_multipart(frames)
        peer.send_multipart([b"hello", b"", b"0"])  # read after the junk: same connection
        with caplog.at_level(logging.WARNING):
            wait_for(lambda: _pump(sender, lambda: sender.sender.peer is not None), 10,
                     "hello")
        assert sender.status().transport["not_answers"] == 15
        logged = [r for r in caplog.records if "not an acknowledgement" in r.getMessage()]
        assert len(logged) == 1, logged
        for message in _events(3):  # the link carries on, to the peer that said hello
            sender.publish(message)
        sequence = [_header(peer.recv_multipart())["seq"] for _ in range(5)]
        assert sequence == [0, 1, 2, 3, 4]
    finally:
        sender.abandon()
        sender.close()


@pytest.mark.parametrize("overflow", ["block", "drop-newest"])
def test_a_full_receiver_queue_holds_a_blocking_sender_back_as_a_plain_one(zmq_socket,
                                                                           overflow):
    """With ``block``, publish waits until the receiver takes the message (a stage held
    back finds its own input queue full), hearing acknowledgements meanwhile; with
    ``drop-newest`` (a detector) it goes on into the window."""
    sender = OutputLink("@tcp://127.0.0.1:*", reliable=True, batch=0, hwm=2,
                        overflow=overflow)
    sender.open()
    count, frame = 40, np.zeros(2**19, np.uint16)  # 1 MiB each: a few fill the kernel's buffers
    published = threading.Event()

    def publish_all() -> None:
        for i in range(count):
            sender.publish(Event({"run": "r", "frame": i}, {"image": frame}))
        published.set()

    publisher = threading.Thread(target=publish_all, daemon=True)
    try:
        peer = zmq_socket(zmq.DEALER)
        peer.rcvtimeo = 5000
        peer.setsockopt(zmq.RCVHWM, 2)
        peer.connect(sender.sender.bound.replace("0.0.0.0", "127.0.0.1"))
        peer.send_multipart([b"hello", b"", b"0"])
        wait_for(lambda: _pump(sender, lambda: sender.sender.peer is not None), 10, "hello")
        publisher.start()
        if overflow == "drop-newest":
            assert published.wait(10), "a drop-newest sender waited for the receiver"
            assert sender.reliable.window.unsent  # in the window, not sent yet
            taken = []
            while len(taken) < count:
                sender.flush()  # (what a runtime does when its queue is empty)
                if peer.poll(100):
                    taken.append(peer.recv_multipart())
            return
        assert not published.wait(1.0), "the sender ran on into a full queue"
        assert sender.reliable.window.unsent
        for seq in range(count):
            frames = peer.recv_multipart()
            assert _header(frames)["seq"] == seq
            if seq == 4:  # acknowledged while the sender waits: it hears it
                peer.send_multipart([b"ack", sender.src.encode(), b"4"])
                wait_for(lambda: sender.reliable.acks == 1, 10, "the acknowledgement read")
                assert not published.is_set()
        assert published.wait(10)
        assert not sender.reliable.window.unsent and len(sender.reliable.window) == count - 5
    finally:
        sender.abandon()
        if publisher.is_alive():
            publisher.join(timeout=10)
        sender.close()


def test_a_sender_of_large_messages_hears_acknowledgements_as_it_sends(zmq_socket):
    """Every ACK_BYTES sent, a sender reads what its receiver said, not only when its
    stage's queue runs empty (flush): a window of 16 MiB messages drains as they go."""
    sender = OutputLink("@tcp://127.0.0.1:*", reliable=True, batch=0)
    sender.open()
    try:
        peer = _raw_receiver(sender.sender.bound.replace("0.0.0.0", "127.0.0.1"), zmq_socket)
        wait_for(lambda: _pump(sender, lambda: sender.sender.peer is not None), 10, "hello")
        image = np.zeros(ACK_BYTES // 2, np.uint16)  # ACK_BYTES a message
        sender.publish(Start({"run": "r"}))
        sender.publish(Event({"run": "r", "frame": 0}, {"image": image}))
        assert [_header(peer.recv_multipart())["seq"] for _ in range(2)] == [0, 1]
        peer.send_multipart([b"ack", sender.src.encode(), b"1"])  # finished both
        wait_for(lambda: readable(sender.sender.socket), 10, "the acknowledgement")
        sender.publish(Event({"run": "r", "frame": 1}, {"image": image}))  # no flush()
        window = sender.reliable.window
        assert (len(window), window.base) == (1, 2)  # only the newest is held
        peer.close(linger=0)
    finally:
        sender.abandon()
        sender.close()
