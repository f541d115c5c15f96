"""MessageQueue: bounds in messages and bytes, the four overflow policies, Start/Stop kept."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from arroyo_core import ConfigError, Event, MessageQueue, Start, Stop


def event(n: int, nbytes: int = 8) -> Event:
    return Event({"n": n}, {"a": np.zeros(nbytes, np.uint8)})


def drain(queue: MessageQueue) -> list:
    items = []
    while len(queue):
        items.append(queue.get(timeout=0))
    return items


def numbers(items) -> list:
    return [m.meta.get("n", m.kind) for m in items]


def test_message_nbytes_counts_payload_only():
    assert Start({"big": "x" * 1000}).nbytes == 0
    payload = {"a": np.zeros((2, 3), "<f8"), "b": b"12345", "c": memoryview(bytearray(7))}
    assert Event({}, payload).nbytes == 48 + 5 + 7


def test_fifo_order_and_get_timeout():
    queue = MessageQueue(max_items=10)
    for n in range(5):
        queue.put(event(n))
    assert numbers(drain(queue)) == [0, 1, 2, 3, 4]
    with pytest.raises(TimeoutError):
        queue.get(timeout=0.01)


def test_block_waits_until_a_get_makes_room():
    queue = MessageQueue(max_items=2, policy="block")
    queue.put(event(0))
    queue.put(event(1))
    done = threading.Event()

    def put_third():
        queue.put(event(2))
        done.set()

    putter = threading.Thread(target=put_third, daemon=True)
    putter.start()
    assert not done.wait(0.2), "put returned although the queue was full"
    assert numbers([queue.get(timeout=1)]) == [0]
    assert done.wait(5), "put stayed blocked after a get made room"
    putter.join(5)
    assert numbers(drain(queue)) == [1, 2]
    assert queue.stats()["dropped"] == {}


def test_drop_newest_discards_the_incoming_event():
    queue = MessageQueue(max_items=3, policy="drop-newest")
    for n in range(6):
        queue.put(event(n))
    assert numbers(drain(queue)) == [0, 1, 2]
    assert queue.stats()["dropped"] == {"drop-newest: queue full": 3}
    assert queue.stats()["sent"] == 3


def test_drop_oldest_discards_the_oldest_event_but_never_start():
    queue = MessageQueue(max_items=3, policy="drop-oldest")
    queue.put(Start({}))
    for n in range(5):
        queue.put(event(n))
    assert numbers(drain(queue)) == ["start", 3, 4]
    assert sum(queue.stats()["dropped"].values()) == 3


def test_keep_latest_keeps_only_the_newest_event():
    queue = MessageQueue(max_items=50, policy="keep-latest")
    for n in range(5):
        queue.put(event(n))
    assert numbers(drain(queue)) == [4]
    assert sum(queue.stats()["dropped"].values()) == 4


@pytest.mark.parametrize("policy", ["block", "drop-newest", "drop-oldest", "keep-latest"])
def test_start_and_stop_are_never_dropped_nor_blocked(policy):
    """A full queue still takes Start and Stop at once: losing them would corrupt a run."""
    queue = MessageQueue(max_items=1, max_bytes=8, policy=policy)
    queue.put(event(0))
    finished = threading.Event()

    def put_run_markers():
        queue.put(Stop({}))
        queue.put(Start({}))
        finished.set()

    threading.Thread(target=put_run_markers, daemon=True).start()
    assert finished.wait(5), f"{policy}: put of Start/Stop blocked on a full queue"
    assert numbers(drain(queue)) == [0, "stop", "start"]
    assert queue.stats()["dropped"] == {}


def test_byte_budget_bounds_the_queue():
    queue = MessageQueue(max_items=100, max_bytes=100, policy="drop-newest")
    for n in range(5):
        queue.put(event(n, nbytes=30))  # three fit in 100 bytes
    assert queue.stats()["bytes"] == 90
    assert numbers(drain(queue)) == [0, 1, 2]
    assert queue.stats()["bytes"] == 0


def test_byte_budget_with_drop_oldest_makes_room_for_a_large_event():
    queue = MessageQueue(max_items=100, max_bytes=100, policy="drop-oldest")
    for n in range(3):
        queue.put(event(n, nbytes=30))
    queue.put(event(9, nbytes=80))  # needs all three gone
    assert numbers(drain(queue)) == [9]


def test_a_single_event_larger_than_the_budget_still_passes_alone():
    queue = MessageQueue(max_items=10, max_bytes=10, policy="drop-newest")
    queue.put(event(0, nbytes=1000))
    queue.put(event(1, nbytes=1))
    assert numbers(drain(queue)) == [0]


def test_block_on_bytes_wakes_when_bytes_leave():
    queue = MessageQueue(max_items=100, max_bytes=50, policy="block")
    queue.put(event(0, nbytes=40))
    putter = threading.Thread(target=queue.put, args=(event(1, nbytes=40),), daemon=True)
    putter.start()
    deadline = time.monotonic() + 5
    putter.join(0.2)
    assert putter.is_alive()
    queue.get(timeout=1)
    putter.join(max(0.0, deadline - time.monotonic()))
    assert not putter.is_alive()
    assert numbers(drain(queue)) == [1]


@pytest.mark.parametrize("kwargs", [dict(policy="lifo"), dict(max_items=0), dict(max_bytes=0)])
def test_bad_configuration_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        MessageQueue(**kwargs)
