"""Batches of Events (docs/protocol.md section 9): what goes in comes out, Event by Event,
with consecutive sequence numbers; anything malformed is rejected whole, by reason."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arroyo_core import DecodeError, EncodeError, Event, Limits, Start, encode
from arroyo_core.batch import ALIGN, BATCH_EVENT_BYTES, EventBatch, decode_all
from arroyo_core.wire import DEFAULT_LIMITS, decode

from .test_decoder_fuzz import FUZZ, META_VALUES, PAYLOAD_VALUES, REASONS

QUICK = settings(FUZZ, max_examples=60)  # the decoder's own fuzzing covers the parts


def batch_of(events: list[Event], seq: int = 0) -> list[bytes]:
    batch = EventBatch()
    for event in events:
        assert batch.add(event)
    return [bytes(f) for f in batch.frames(src="s", seq=seq, time=1.5)]


def events_of(frames: list[Any], limits: Limits = DEFAULT_LIMITS) -> list[Event]:
    decoded = decode_all(frames, limits)
    assert [envelope.seq for _, envelope in decoded] == [
        decoded[0][1].seq + index for index in range(len(decoded))]
    return [message for message, _ in decoded]


def same(got: Event, want: Event) -> bool:
    if (msgpack.packb(got.meta) != msgpack.packb(want.meta)
            or list(got.payload) != list(want.payload)):
        return False
    for name, value in want.payload.items():
        received = got.payload[name]
        if isinstance(value, (bytes, bytearray, memoryview)):
            if bytes(received) != bytes(value):
                return False
        else:
            value = np.asarray(value)
            if (received.dtype != value.dtype or received.shape != value.shape
                    or received.tobytes() != value.tobytes()):
                return False
    return True


@given(st.lists(st.tuples(st.dictionaries(st.text(max_size=6), META_VALUES, max_size=3),
                          st.dictionaries(st.text(max_size=5), PAYLOAD_VALUES, max_size=3)),
                min_size=1, max_size=6),
       st.integers(0, 2**63))
@QUICK
def test_every_event_comes_back_with_its_own_seq(drawn, seq):
    events = [Event(meta, payload) for meta, payload in drawn]
    decoded = decode_all(batch_of(events, seq), DEFAULT_LIMITS)
    assert [envelope.seq for _, envelope in decoded] == list(range(seq, seq + len(events)))
    assert all(envelope.src == "s" for _, envelope in decoded)
    for (message, _), event in zip(decoded, events, strict=True):
        assert same(message, event)
        for value in message.payload.values():
            if isinstance(value, np.ndarray):
                assert not value.flags.writeable
                assert value.ctypes.data % ALIGN == 0 or value.nbytes == 0
            else:
                assert value.readonly


@pytest.mark.parametrize("dtype", ["<f16", ">f16", "<c32", ">c32", ">u2", "<M8[s]", "|S3",
                                   ">U2", "|b1"])
def test_every_byte_order_and_kind_goes_in_a_batch(dtype):
    event = Event({"dtype": dtype}, {"x": np.ones((2, 3), dtype), "odd": np.ones(3, dtype)[::2]})
    [got] = events_of(batch_of([event]))
    assert same(got, event)


def test_a_single_message_decodes_as_one():
    frames = [bytes(f) for f in encode(Start({"run": 1}), src="a", seq=3)]
    [(message, envelope)] = decode_all(frames, DEFAULT_LIMITS)
    assert type(message) is Start and envelope.seq == 3


def test_the_sender_may_reuse_its_arrays_once_added():
    image = np.zeros(8, np.uint8)
    batch = EventBatch()
    batch.add(Event({"frame": 0}, {"image": image}))
    image[:] = 7
    batch.add(Event({"frame": 1}, {"image": image}))
    first, second = events_of(batch.frames(src="s", seq=0))
    assert first.payload["image"].tolist() == [0] * 8
    assert second.payload["image"].tolist() == [7] * 8


def test_a_big_event_is_left_out_and_the_batch_unchanged():
    batch = EventBatch()
    assert not batch.add(Event({}, {"image": np.zeros(BATCH_EVENT_BYTES, np.uint8)}))
    assert len(batch) == 0 and batch.nbytes == 0
    assert batch.add(Event({}, {"image": np.zeros(BATCH_EVENT_BYTES - 1, np.uint8)}))


@pytest.mark.parametrize("event", [
    Event({b"bin": 1}, {}),  # a bin map key
    Event({"when": object()}, {}),  # not msgpack-serialisable
    Event({}, {1: np.zeros(2)}),  # a payload name that is not a str
    Event({}, {"x": np.array([object()])}),  # an object array
])
def test_what_the_wire_cannot_carry_fails_at_add(event):
    batch = EventBatch()
    batch.add(Event({"frame": 0}, {"x": np.arange(3)}))
    with pytest.raises(EncodeError):
        batch.add(event)
    assert len(batch) == 1 and batch.nbytes == 3 * 8
    batch.add(Event({"frame": 1}, {}))
    first, _ = events_of(batch.frames(src="s", seq=0))
    assert same(first, Event({"frame": 0}, {"x": np.arange(3)}))


def test_decode_alone_refuses_a_batch():
    with pytest.raises(DecodeError, match="unknown message kind 'batch'"):
        decode(batch_of([Event({}, {}), Event({}, {})]))


GOOD = [Event({"frame": 0}, {"a": np.arange(3, dtype="<u2")}),
        Event({"frame": 1}, {"b": b"xyz", "c": np.float32(1)})]


def _edit_header(frames: list[bytes], **fields: Any) -> list[bytes]:
    header = msgpack.unpackb(frames[0])
    for key, value in fields.items():
        if value is None:
            del header[key]
        else:
            header[key] = value
    return [msgpack.packb(header), *frames[1:]]


@pytest.mark.parametrize("mutate, reason", [
    (lambda f: _edit_header(f, events=[]), "header"),
    (lambda f: _edit_header(f, events=None), "header"),
    (lambda f: _edit_header(f, events={"a": 1}), "header"),
    (lambda f: _edit_header(f, events=[[{}, []], 5]), "header"),
    (lambda f: _edit_header(f, events=[[{}, [["a", "<u2", [3]], ["a", "<u2", [1]]]]]),
     "header"),
    (lambda f: _edit_header(f, seq=2**64 - 1), "header"),
    (lambda f: _edit_header(f, src=None), "header"),
    (lambda f: _edit_header(f, v=2), "version"),
    (lambda f: f[:1], "frames"),
    (lambda f: [*f, b""], "frames"),
    (lambda f: [f[0], f[1][:-9]], "length"),  # the last entry runs past the data
    (lambda f: [f[0], f[1] + bytes(8)], "length"),  # data beyond its entries
    (lambda f: _edit_header(f, events=[[{}, [["a", "<u3", [3]]]]]), "dtype"),
    (lambda f: _edit_header(f, events=[[{}, [["a", "<u2", [-1]]]]]), "shape"),
    (lambda f: [f[0][:-3], f[1]], "msgpack"),
])
def test_a_malformed_batch_is_rejected_whole(mutate, reason):
    with pytest.raises(DecodeError) as caught:
        decode_all(mutate(batch_of(GOOD)), DEFAULT_LIMITS)
    assert caught.value.reason == reason


def test_limits_apply_to_batches():
    frames = batch_of([Event({}, {"a": np.zeros(2)}) for _ in range(5)])
    with pytest.raises(DecodeError, match="5 events exceeds the limit of 4") as caught:
        decode_all(frames, Limits(max_batch_events=4))
    assert caught.value.reason == "size"
    with pytest.raises(DecodeError) as caught:
        decode_all(frames, Limits(max_message_bytes=len(frames[0]) + len(frames[1]) - 1))
    assert caught.value.reason == "size"
    many = batch_of([Event({}, {f"a{i}": np.zeros(1) for i in range(3)})])
    with pytest.raises(DecodeError, match="3 arrays exceed") as caught:
        decode_all(many, Limits(max_arrays=2))


@given(st.data())
@QUICK
def test_mutated_batches_give_events_or_a_documented_reason(data):
    """Bit flips and truncations of a valid batch: DecodeError by a documented reason, or
    Events that are whole (never another exception)."""
    frames = [bytearray(f) for f in batch_of(GOOD)]
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, 1))
        if not frames[index]:
            continue
        where = data.draw(st.integers(0, len(frames[index]) - 1))
        if data.draw(st.booleans()):
            frames[index][where] ^= 1 << data.draw(st.integers(0, 7))
        else:
            del frames[index][where:]
    try:
        messages = decode_all([bytes(f) for f in frames], DEFAULT_LIMITS)
    except DecodeError as exc:
        assert exc.reason in REASONS
        return
    for message, _ in messages:
        for value in getattr(message, "payload", {}).values():
            bytes(value) if isinstance(value, memoryview) else value.tolist()
