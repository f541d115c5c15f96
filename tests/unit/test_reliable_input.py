"""A reliable input's bookkeeping (arroyo_core.reliable_link.ReliableInput), without
sockets: a received batch is one Delivery handed on at once, with one Finishing item, and
the runtime's handling()/handled() calls, message by message, tell outputs each Event's
origin and finish the batch once its last Event (or what the queue left of it) is handled."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from arroyo_core.batch import EventBatch
from arroyo_core.errors import DecodeError
from arroyo_core.ledger import InputLedger
from arroyo_core.message import Event, Start
from arroyo_core.reliable import ACK, carriage
from arroyo_core.reliable_link import ReliableInput
from arroyo_core.wire import DEFAULT_LIMITS, encode


class Receiver:
    """What a transport's receiver is told: answers (acknowledgements and hellos)."""

    on_connect = None

    def __init__(self) -> None:
        self.answers: list[tuple[Any, str, str, int]] = []

    def answer(self, token: Any, kind: str, src: str, seq: int, nbytes: int = 0) -> None:
        self.answers.append((token, kind, src, seq))


class Output:
    """An output that records the origin it is told before each message is handled (as
    :meth:`ReliableInput.handling` sets them on a ReliableOutput: its ``origin``, its result
    count ``k``)."""

    def __init__(self) -> None:
        self.origins: list[Any] = []
        self.k = 0

    @property
    def origin(self) -> Any:
        return self.origins[-1]

    @origin.setter
    def origin(self, origin: Any) -> None:
        self.origins.append(origin)


def batch_frames(src: str, seq: int, frames: list[int], runs: list[list[Any]],
                 base: int = 0) -> list[Any]:
    """A reliable message: a batch of one Event per frame number, its header inside the
    carriage."""
    batch = EventBatch()
    for frame in frames:
        assert batch.add(Event({"frame": frame}, {"x": np.full(4, frame, np.uint16)}))
    header, *payload = batch.frames(src=src, seq=seq)
    return [carriage(base, runs, header), *payload]


def make_input() -> tuple[ReliableInput, Receiver, Output]:
    receiver = Receiver()
    reliable = ReliableInput(receiver, InputLedger("input test"))  # type: ignore[arg-type]
    output = Output()
    reliable.outputs = [output]  # type: ignore[list-item]
    return reliable, receiver, output


def handle_all(reliable: ReliableInput, messages: list[Any]) -> None:
    for message in messages:
        reliable.handling(message)
        reliable.handled(message)


def test_a_batch_is_one_delivery_finished_once_its_last_event_is_handled():
    reliable, receiver, output = make_input()
    delivery = reliable.accept(batch_frames("a", 0, [0, 1, 2], [["o", 10, 0, 3]]), "t",
                               DEFAULT_LIMITS)
    assert delivery is not None and delivery.src == "a"
    assert [m.meta["frame"] for m in delivery.messages] == [0, 1, 2]
    assert delivery.origins == ("o", 10, 0)  # one run: kept as one tuple
    assert reliable.ledger.status().received == 3
    reliable.delivered_many(delivery)
    handle_all(reliable, delivery.messages[:2])
    assert receiver.answers == [] and len(reliable.finishing) == 1
    handle_all(reliable, delivery.messages[2:])
    assert output.origins == [("o", 10, 0), ("o", 11, 0), ("o", 12, 0)]
    assert receiver.answers == [("t", ACK, "a", 2)] and len(reliable.finishing) == 0


def test_what_the_queue_dropped_is_finished_with_the_next_message_handled():
    reliable, receiver, output = make_input()
    first = reliable.accept(batch_frames("a", 0, [0, 1, 2], [["o", 0, 0, 3]]), "t1",
                            DEFAULT_LIMITS)
    second = reliable.accept(batch_frames("a", 3, [3, 4], [["o", 3, 0, 2]]), "t2",
                             DEFAULT_LIMITS)
    assert first is not None and second is not None
    reliable.delivered_many(first)
    reliable.delivered_many(second)
    handle_all(reliable, first.messages[:1])  # 1 and 2 dropped by the queue's policy
    assert receiver.answers == []
    handle_all(reliable, second.messages[1:])  # and 3
    assert output.origins == [("o", 0, 0), ("o", 4, 0)]
    assert receiver.answers == [("t1", ACK, "a", 2), ("t2", ACK, "a", 4)]


def test_a_batch_again_is_a_duplicate_and_origins_had_are_dropped_counted():
    reliable, receiver, output = make_input()
    frames = batch_frames("a", 0, [0, 1, 2], [["o", 0, 0, 3]])
    delivery = reliable.accept(frames, "t", DEFAULT_LIMITS)
    assert delivery is not None
    reliable.delivered_many(delivery)
    handle_all(reliable, delivery.messages)
    assert reliable.accept(frames, "t", DEFAULT_LIMITS) is None  # resent: answered again
    assert receiver.answers[-1] == ("t", ACK, "a", 2)
    # A restarted upstream (new sender b) made 1..3 again; 1 and 2 were had.
    again = reliable.accept(batch_frames("b", 0, [1, 2, 3], [["o", 1, 0, 3]]), "u",
                            DEFAULT_LIMITS)
    assert again is not None
    assert [m.meta["frame"] for m in again.messages] == [3] and again.origins == [("o", 3, 0)]
    assert reliable.arrivals.duplicates == 2
    reliable.delivered_many(again)
    handle_all(reliable, again.messages)
    assert output.origins[-1] == ("o", 3, 0) and receiver.answers[-1] == ("u", ACK, "b", 2)
    nothing_new = reliable.accept(batch_frames("c", 0, [2], [["o", 2, 0, 1]]), "v",
                                  DEFAULT_LIMITS)
    assert nothing_new is None and receiver.answers[-1] == ("v", ACK, "c", 0)


def test_a_message_passed_on_alone_has_its_origin_and_item_in_its_tag():
    reliable, receiver, output = make_input()
    start = Start({"run": 1})
    (header,) = encode(start, src="a", seq=0)
    delivery = reliable.accept([carriage(0, [["o", 0, 0, 1]], header)], "t", DEFAULT_LIMITS)
    assert delivery is not None
    [(message, tag)] = delivery.tags()
    assert message.kind == "start" and tag[0] == "a" and tag[2] == ("o", 0, 0)
    reliable.delivered(message, tag)
    handle_all(reliable, [message])
    assert output.origins == [("o", 0, 0)] and receiver.answers == [("t", ACK, "a", 0)]


def test_a_message_of_no_frames_is_a_decode_error_not_a_crash():
    reliable, receiver, _ = make_input()
    with pytest.raises(DecodeError) as caught:
        reliable.accept([], "t", DEFAULT_LIMITS)
    assert caught.value.reason == "carriage" and receiver.answers == []
