"""What a reliable receiver tells its sender (arroyo_core.transports.answers), over a real
ZeroMQ socket pair: acknowledgements are cumulative and go at most every ACK_DELAY_S, hellos
go at once, as do acknowledgements that cover ACK_BYTES, and ``due`` says when the
receiving thread has something to send. The clock is
a stand-in the test moves, so a loaded machine cannot make it flaky."""

from __future__ import annotations

import math
import select
from collections.abc import Iterator

import pytest
import zmq

from arroyo_core.reliable import ACK_BYTES, ACK_DELAY_S
from arroyo_core.transports import answers as answers_module
from arroyo_core.transports.answers import Answers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(answers_module, "time", clock)
    return clock


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    context = zmq.Context()
    sender, receiver = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    sender.bind("inproc://answers")
    receiver.connect("inproc://answers")
    yield sender, receiver
    sender.close(linger=0)
    receiver.close(linger=0)
    context.term()


def said(socket: zmq.Socket) -> list[list[bytes]]:
    """What arrived (inproc: a message sent is there at once)."""
    heard = []
    while socket.poll(0):
        heard.append(socket.recv_multipart())
    return heard


def frames(token: object, kind: str, src: str, seq: int) -> list[bytes]:
    return [kind.encode(), src.encode(), b"%d" % seq]


def test_acknowledgements_are_cumulative_and_wait_for_their_delay(pair, clock):
    receiving_end, sending_end = pair
    answers = Answers(frames)
    assert answers.due == math.inf  # nothing to say
    answers.put(None, "ack", "a", 3)
    answers.put(None, "ack", "a", 7)
    assert answers.due <= clock.now  # none sent before: due at once
    answers.flush(receiving_end)
    assert answers.due == math.inf and answers.acks_sent == 1
    assert said(sending_end) == [[b"ack", b"a", b"7"]]  # the newest only
    clock.now += ACK_DELAY_S / 2
    answers.put(None, "ack", "a", 9)
    assert answers.due == 100.0 + ACK_DELAY_S  # when the last went, plus the delay
    answers.flush(receiving_end)  # too early: kept
    assert said(sending_end) == []
    clock.now = answers.due
    answers.flush(receiving_end)
    assert said(sending_end) == [[b"ack", b"a", b"9"]]
    answers.close()


def test_a_hello_is_due_at_once_and_an_acknowledgement_waiting_stays_due(pair, clock):
    receiving_end, sending_end = pair
    answers = Answers(frames)
    answers.put(None, "ack", "a", 1)
    answers.flush(receiving_end)
    answers.put(None, "ack", "a", 2)  # not yet due
    answers.put(None, "hello", "", 0)
    assert answers.due == 0.0
    answers.flush(receiving_end)
    assert 0.0 < answers.due < math.inf  # the acknowledgement goes when its delay is up
    assert said(sending_end) == [[b"ack", b"a", b"1"], [b"hello", b"", b"0"]]
    answers.flush(receiving_end, force=True)
    assert said(sending_end) == [[b"ack", b"a", b"2"]] and answers.due == math.inf
    answers.close()


def test_acknowledgements_that_cover_ack_bytes_go_at_once(pair, clock):
    """Large messages: a window of them drains in a few acknowledgements, which must not
    each wait ACK_DELAY_S at every hop."""
    receiving_end, sending_end = pair
    answers = Answers(frames)
    answers.put(None, "ack", "a", 1, ACK_BYTES // 2)
    answers.flush(receiving_end)
    assert said(sending_end) == [[b"ack", b"a", b"1"]]  # the first: nothing sent before
    answers.put(None, "ack", "a", 2, ACK_BYTES // 2)
    assert answers.due == clock.now + ACK_DELAY_S  # not yet ACK_BYTES since the last
    answers.put(None, "ack", "b", 7, ACK_BYTES // 2)  # (over all senders)
    assert answers.due == 0.0
    answers.flush(receiving_end)
    assert said(sending_end) == [[b"ack", b"a", b"2"], [b"ack", b"b", b"7"]]
    answers.put(None, "ack", "a", 3, ACK_BYTES - 1)  # counted afresh since then
    answers.flush(receiving_end)
    assert said(sending_end) == []
    answers.close()


def test_a_sleeping_receiver_is_woken_when_acknowledgements_cover_ack_bytes(pair, clock):
    receiving_end, _ = pair
    answers = Answers(frames)
    answers.put(None, "ack", "a", 1)
    answers.flush(receiving_end, force=True)
    assert answers.sleep_ms(1000) == 1000  # nothing owed: the thread sleeps in poll
    answers.put(None, "ack", "a", 2, ACK_BYTES // 2)
    assert readable(answers.wake_r)  # woken to wait for the delay instead
    answers.awake({answers.wake_r: zmq.POLLIN})
    assert 0 < answers.sleep_ms(1000) < 1000
    answers.put(None, "ack", "a", 3, ACK_BYTES // 2)
    assert readable(answers.wake_r)  # woken again: they cover ACK_BYTES now
    answers.awake({answers.wake_r: zmq.POLLIN})
    assert answers.sleep_ms(1000) == 0
    answers.close()


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])
