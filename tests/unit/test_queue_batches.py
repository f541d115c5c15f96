"""MessageQueue.get_many: the processing loop takes a batch per wake-up, within the bounds."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from arroyo_core import Event, MessageQueue, Start, Stop


def event(n: int, nbytes: int = 8) -> Event:
    return Event({"n": n}, {"a": np.zeros(nbytes, np.uint8)})


def numbers(items) -> list:
    return [m.meta.get("n", m.kind) for m in items]


def test_get_many_takes_everything_queued_in_order():
    queue = MessageQueue(max_items=10)
    queue.put(Start({}))
    for n in range(4):
        queue.put(event(n))
    queue.put(Stop({}))
    assert numbers(queue.get_many()) == ["start", 0, 1, 2, 3, "stop"]
    assert len(queue) == 0 and queue.stats()["bytes"] == 0


def test_get_many_stops_at_its_byte_limit_but_always_returns_one():
    queue = MessageQueue(max_items=10, max_bytes=10_000)
    for n in range(5):
        queue.put(event(n, nbytes=300))
    assert numbers(queue.get_many(max_bytes=700)) == [0, 1]  # a third would make 900
    assert queue.stats()["bytes"] == 900
    assert numbers(queue.get_many(max_bytes=100)) == [2]  # larger than the limit: alone
    assert numbers(queue.get_many()) == [3, 4]


def test_get_many_times_out_on_an_empty_queue():
    with pytest.raises(TimeoutError):
        MessageQueue().get_many(timeout=0.01)


def test_get_many_wakes_a_put_blocked_on_a_full_queue():
    queue = MessageQueue(max_items=2, policy="block")
    queue.put(event(0))
    queue.put(event(1))
    putter = threading.Thread(target=queue.put, args=(event(2),), daemon=True)
    putter.start()
    putter.join(0.2)
    assert putter.is_alive(), "put returned although the queue was full"
    assert numbers(queue.get_many()) == [0, 1]
    putter.join(5)
    assert not putter.is_alive(), "put stayed blocked after get_many made room"
    assert numbers(queue.get_many(timeout=1)) == [2]


def test_get_many_waits_for_the_first_item():
    queue = MessageQueue()
    got: list = []
    taker = threading.Thread(target=lambda: got.extend(queue.get_many(timeout=5)), daemon=True)
    taker.start()
    taker.join(0.1)
    assert taker.is_alive()
    queue.put(event(7))
    taker.join(5)
    assert numbers(got) == [7]


def test_a_blocked_put_resumes_once_the_queue_has_drained_to_half():
    """Not at every freed slot: that would switch threads once per message."""
    queue = MessageQueue(max_items=4, policy="block")
    for n in range(4):
        queue.put(event(n))
    done = threading.Event()

    def put_fifth():
        queue.put(event(4))
        done.set()

    threading.Thread(target=put_fifth, daemon=True).start()
    assert numbers([queue.get()]) == [0]  # three left: more than half
    assert not done.wait(0.2), "put was woken before the queue had drained to half"
    assert numbers([queue.get()]) == [1]  # two left: half
    assert done.wait(5), "put stayed blocked after the queue had drained to half"
    assert numbers(queue.get_many()) == [2, 3, 4]
