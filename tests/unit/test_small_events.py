"""The per-event path of small events, done a batch at once: the batch encoder's quick path
writes the bytes the general one does, a batch is decoded, counted in the ledger and
queued at once with the same results as Event by Event, and bin map keys anywhere in a
batch are still rejected as ``msgpack``."""

from __future__ import annotations

import threading

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arroyo_core import DecodeError, Event, MessageQueue
from arroyo_core.batch import _DESCRIPTORS, _MAX_DESCRIPTORS, EventBatch, decode_all, decode_batch
from arroyo_core.ledger import InputLedger
from arroyo_core.wire import DEFAULT_LIMITS

PLAIN = ["<u1", "<u2", ">u2", "<i4", ">i8", "<f4", ">f8", "<c8", "|b1"]


def frames_of(events: list[Event], general: bool) -> list[bytes]:
    batch = EventBatch()
    for event in events:
        assert (batch._add_any(event) if general else batch.add(event))
    return [bytes(f) for f in batch.frames(src="s", seq=7, time=1.5)]


arrays = st.builds(lambda dtype, shape, fill: np.full(shape, fill).astype(dtype),
                   st.sampled_from(PLAIN), st.lists(st.integers(0, 4), max_size=3),
                   st.integers(0, 100))


metas = st.dictionaries(st.text(max_size=4), st.integers(-2**63, 2**64 - 1), max_size=3)


@given(st.lists(st.tuples(metas, st.dictionaries(st.text(max_size=4), arrays, max_size=17)),
                min_size=1, max_size=5))
@settings(max_examples=80, deadline=None)
def test_the_quick_path_writes_the_bytes_of_the_general_one(drawn):
    events = [Event(meta, payload) for meta, payload in drawn]
    assert frames_of(events, general=False) == frames_of(events, general=True)


def test_the_descriptor_table_stays_bounded():
    for n in range(_MAX_DESCRIPTORS + 10):
        EventBatch().add(Event({}, {"a": np.zeros(n % 2000, np.uint8)}))
    assert len(_DESCRIPTORS) <= _MAX_DESCRIPTORS


def test_decode_batch_gives_what_decode_all_gives():
    events = [Event({"frame": n}, {"image": np.full((2, 3), n, "<u2")}) for n in range(5)]
    frames = frames_of(events, general=False)
    messages, envelope = decode_batch(frames, DEFAULT_LIMITS)
    pairs = decode_all(frames, DEFAULT_LIMITS)
    assert [m.meta for m in messages] == [m.meta for m, _ in pairs]
    assert [e.seq for _, e in pairs] == [7, 8, 9, 10, 11] and envelope.seq == 7
    for message, event in zip(messages, events, strict=True):
        assert np.array_equal(message.payload["image"], event.payload["image"])
        assert not message.payload["image"].flags.writeable


def _with_events(frames: list[bytes], entries: list, **fields) -> list[bytes]:
    header = msgpack.unpackb(frames[0])
    header.update(events=entries, **fields)
    return [msgpack.packb(header, use_bin_type=True), frames[1]]


@pytest.mark.parametrize("entries, fields", [
    ([[{b"bin": 1}, []], [{}, []]], {}),  # in an Event's metadata
    ([[{}, []], [{"deep": [{"x": {b"bin": 1}}]}, []]], {}),  # nested, in the second
    ([[{}, []], [{b"bin": 1}, []]], {"v": 2}),  # found before the version is looked at
    ([5, [{b"bin": 1}, []]], {}),  # found before the malformed first entry counts
    ([[{}, [["a", "<u2", [1, {b"bin": 1}]]]]], {}),  # in a descriptor
])
def test_a_bin_key_anywhere_in_a_batch_is_a_msgpack_error(entries, fields):
    frames = _with_events(frames_of([Event({}, {}), Event({}, {})], general=True),
                          entries, **fields)
    with pytest.raises(DecodeError) as caught:
        decode_batch(frames, DEFAULT_LIMITS)
    assert caught.value.reason == "msgpack"


batches = st.lists(st.tuples(st.integers(0, 40), st.integers(1, 6)), min_size=1,
                   max_size=12)


@pytest.mark.parametrize("shared", [False, True])
@given(drawn=batches)
@settings(max_examples=80, deadline=None)
def test_a_batch_counts_in_the_ledger_as_its_events_one_by_one(shared, drawn):
    at_once, one_by_one = InputLedger("a", shared=shared), InputLedger("b", shared=shared)
    for seq, count in drawn:
        messages = list(range(seq, seq + count))
        fresh = at_once.observe_many("s", seq, messages)
        assert fresh == [n for n in messages if one_by_one.observe("s", n)]
    got, want = at_once.stats(), one_by_one.stats()
    assert {**got, "link": None} == {**want, "link": None}


def event(n: int) -> Event:
    return Event({"n": n}, {"a": np.zeros(8, np.uint8)})


def test_put_many_queues_in_order_and_applies_the_policy_to_each():
    queue = MessageQueue(max_items=3, policy="drop-newest")
    queue.put_many([event(n) for n in range(5)])
    assert [m.meta["n"] for m in queue.get_many()] == [0, 1, 2]
    assert queue.stats()["dropped"] == {"drop-newest: queue full": 2}


def test_put_many_of_more_than_fits_wakes_the_consumer_before_it_waits():
    queue = MessageQueue(max_items=4, policy="block")
    got: list[int] = []

    def consume() -> None:
        while len(got) < 20:
            got.extend(m.meta["n"] for m in queue.get_many(timeout=10))

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    queue.put_many([event(n) for n in range(20)])  # would never return if not woken
    consumer.join(10)
    assert got == list(range(20))
