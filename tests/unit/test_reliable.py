"""The reliable link's pure logic (arroyo_core.reliable): the carriage frame, the send
window, what a receiver accepts, and when a message is finished."""

from __future__ import annotations

import msgpack
import pytest

from arroyo_core.errors import DecodeError
from arroyo_core.reliable import (
    Arrivals,
    Entry,
    Finishing,
    SendWindow,
    add_origin,
    carriage,
    covers,
    origins_of,
    read_carriage,
)


def test_carriage_round_trip_carries_the_header_and_the_origin_runs():
    runs: list = []
    for origin in [("s", 4, 0), ("s", 5, 0), ("s", 6, 0), ("t", 0, 1), ("s", 7, 0)]:
        add_origin(runs, origin)
    assert runs == [["s", 4, 0, 3], ["t", 0, 1, 1], ["s", 7, 0, 1]]
    base, read_runs, header = read_carriage(carriage(9, runs, b"\x80header"))
    assert base == 9 and read_runs == runs and header == b"\x80header"
    covers(runs, 5)
    assert origins_of(runs) == [("s", 4, 0), ("s", 5, 0), ("s", 6, 0), ("t", 0, 1), ("s", 7, 0)]


@pytest.mark.parametrize("frame", [
    b"\xc1", msgpack.packb([1, 0, [["s", 0, 0, 1]]]),  # version 1: the header beside it
    msgpack.packb([3, 0, [["s", 0, 0, 1]], b"h"]), msgpack.packb([2.0, 0, [], b"h"]),
    msgpack.packb([2, -1, [], b"h"]), msgpack.packb([2, 0, [["s", 0, 0]], b"h"]),
    msgpack.packb([2, 0, [["s", 0, 0, 0]], b"h"]), msgpack.packb({"v": 2}),
    msgpack.packb([2, 0, [["s", 0, 0, 1]], "h"]),  # the header as str, not bin
    msgpack.packb([2, 0, [["s", 0, 0, 1]]]), msgpack.packb([2, 0, [["s", 0, 0, 1]], b"h", 0]),
    msgpack.packb([2, 0, [[b"s", 0, 0, 1]], b"h"], use_bin_type=True), msgpack.packb([]),
])
def test_a_bad_carriage_is_rejected_with_its_reason(frame):
    with pytest.raises(DecodeError) as caught:
        read_carriage(frame)
    assert caught.value.reason == "carriage"


@pytest.mark.parametrize("runs, count", [([["s", 0, 0, 2]], 1), ([], 1),
                                         ([["s", 0, 0, 1], ["t", 0, 0, 1]], 3)])
def test_runs_that_do_not_cover_the_message_are_rejected(runs, count):
    with pytest.raises(DecodeError) as caught:
        covers(runs, count)
    assert caught.value.reason == "carriage"


def _entry(seq: int, n: int = 1, size: int = 10) -> Entry:
    return (seq, n, [b"x" * size], [["s", seq, 0, n]], size)


def test_window_is_bounded_by_messages_and_bytes_and_forgets_what_is_acknowledged():
    window = SendWindow(max_messages=3, max_bytes=25)
    window.put(_entry(0))
    window.put(_entry(1, n=4))  # a batch of 4 Events: numbers 1..4
    assert not window.full()
    window.put(_entry(5))
    assert window.full()  # 30 bytes
    assert window.ack(3) == 1 and window.base == 1  # the batch is not whole: it stays
    assert window.ack(4) == 1 and window.base == 5
    window.unsent.clear()
    assert window.ack(5) == 1 and window.base == 6 and not window.entries
    assert window.nbytes == 0


def test_a_hello_resends_from_where_the_receiver_is():
    window = SendWindow(10, 1000)
    for seq in range(4):
        window.put(_entry(seq))
    window.unsent.clear()  # all offered
    window.resend_from(2)
    assert [e[0] for e in window.unsent] == [2, 3]
    window.resend_from(0)
    assert [e[0] for e in window.unsent] == [0, 1, 2, 3] and window.resends == 2


def test_arrivals_take_each_sender_in_order_and_ask_for_a_gap_once():
    arrivals = Arrivals()
    assert arrivals.check("a", 5, 1, base=5) == "new"  # a new sender starts at its base
    assert arrivals.check("a", 6, 3, base=5) == "new"  # a batch of 3
    assert arrivals.check("a", 6, 3, base=5) == "duplicate"
    assert arrivals.check("a", 11, 1, base=6) == "gap"  # 9 and 10 went missing
    assert arrivals.ask("a") and not arrivals.ask("a")  # asked once per gap
    assert arrivals.check("a", 9, 1, base=6) == "new"
    assert arrivals.check("b", 3, 1, base=0) == "gap"  # the first of b's window is missing
    assert arrivals.expected["b"] == 0
    assert arrivals.check("c", 7, 1, base=8) == "duplicate"  # finished elsewhere already
    assert arrivals.status() == {"resent_duplicates": 2, "out_of_order": 2,
                                 "duplicates_dropped": 0}


def test_an_origin_seen_before_is_a_duplicate_whatever_sender_brings_it():
    arrivals = Arrivals()
    assert all(arrivals.fresh(("src", seq, 0)) for seq in range(5))
    assert not arrivals.fresh(("src", 3, 0))  # made again by a restarted stage
    assert arrivals.fresh(("src", 4, 1))  # a second result of the same input
    assert not arrivals.fresh(("src", 4, 1))
    assert arrivals.fresh(("other", 0, 0))
    assert arrivals.duplicates == 2


def test_origins_out_of_order_are_taken_once_each_and_memory_stays_bounded():
    from arroyo_core.origins import MAX_SEEN

    arrivals = Arrivals()
    order = [1, 0, 3, 2, 5, 4]  # as after a pool of two workers
    assert all(arrivals.fresh(("s", seq, 0)) for seq in order)
    assert not any(arrivals.fresh(("s", seq, 0)) for seq in order)
    for seq in range(6, 3 * MAX_SEEN):
        assert arrivals.fresh(("s", seq, 0))
    seen = arrivals.seen["s"]
    assert seen.count <= MAX_SEEN and len(seen.keys) <= MAX_SEEN and seen.low > (0, 0)
    assert not arrivals.fresh(("s", 7, 0)) and not arrivals.fresh(("s", 3 * MAX_SEEN - 1, 0))


class Output:
    """An output with a settled count, as ReliableOutput has."""

    def __init__(self) -> None:
        self.count = 0

    def settled(self) -> int:
        return self.count


def test_finishing_acknowledges_in_order_once_downstream_has_acknowledged():
    acked: list = []
    finishing = Finishing(lambda token, kind, src, seq, nbytes: acked.append((token, src, seq)))
    out = Output()
    first = finishing.add("t", "a", 0, done=False)
    second = finishing.add("t", "a", 3, done=False)
    finishing.add("t", "a", 4, done=True)  # all of it dropped as duplicates: done at once
    assert acked == []  # but not before those before it
    finishing.handled([second], ((out, 2),))
    assert acked == []  # the first is not handled yet
    finishing.handled([first], ((out, 1),))
    assert acked == []  # handled, not yet acknowledged downstream
    out.count = 1
    finishing.advance()
    assert acked == [("t", "a", 0)]
    out.count = 2
    finishing.advance()
    assert acked[-1] == ("t", "a", 4) and len(finishing) == 0  # cumulative: one for both
    assert finishing.finished == {"a": 4}


def test_an_acknowledgement_says_how_many_bytes_it_newly_finishes():
    """The receiver's answers go at once once they cover ACK_BYTES (transports/answers.py):
    each acknowledgement carries the bytes of the messages it finishes, per sender."""
    acked: list = []
    finishing = Finishing(lambda token, kind, src, seq, nbytes: acked.append((src, seq, nbytes)))
    items = [finishing.add("t", src, seq, False, nbytes)
             for src, seq, nbytes in (("a", 0, 100), ("b", 0, 20), ("a", 1, 300))]
    finishing.handled(items[:2], ())
    assert acked == [("a", 0, 100), ("b", 0, 20)]
    finishing.add("t", "b", 1, True, 5)  # waits for the one before it
    finishing.handled(items[2:], ())
    assert acked[2:] == [("a", 1, 300), ("b", 1, 5)]
    together = [finishing.add("t", "a", seq, False, 10) for seq in (2, 3)]
    finishing.handled(together, ())
    assert acked[4:] == [("a", 3, 20)]  # one acknowledgement for both: their bytes summed
