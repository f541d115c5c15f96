"""Redis carriage v1: wire frames in a stream entry's fields or in one pub/sub value."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from arroyo_core.errors import DecodeError
from arroyo_core.message import Event, Start
from arroyo_core.transports.redis.framing import (
    ALIGN,
    frames_from_fields,
    pack_frames,
    packed_size,
    stream_fields,
    unpack_frames,
)
from arroyo_core.wire import decode, encode


def sample_frames():
    event = Event({"frame": 7}, {"image": np.arange(12, dtype=np.uint16).reshape(3, 4),
                                  "note": b"hi!", "gain": np.float32(1.5) * np.ones(3)})
    return encode(event, src="det-1", seq=7, time=1.0)


def test_stream_fields_are_v_h_then_a0_an_and_carry_the_frames_unchanged():
    frames = sample_frames()
    fields = stream_fields(frames)
    assert list(fields) == [b"v", b"h", b"a0", b"a1", b"a2"]
    assert fields[b"v"] == b"1"
    received = {key: bytes(value) for key, value in fields.items()}  # what Redis hands back
    back = frames_from_fields(received)
    assert [bytes(f) for f in back] == [bytes(memoryview(f).cast("B")) for f in frames]
    message, envelope = decode(back)
    assert envelope.seq == 7 and message.payload["image"].tolist() == [[0, 1, 2, 3],
                                                                       [4, 5, 6, 7],
                                                                       [8, 9, 10, 11]]


@pytest.mark.parametrize("fields, why", [
    ({b"h": b"x"}, "no version"),
    ({b"v": b"2", b"h": b"x"}, "other carriage version"),
    ({b"v": b"1"}, "no header"),
    ({b"v": b"1", b"h": b"x", b"a1": b""}, "gap in array fields"),
    ({b"v": b"1", b"h": b"x", b"a0": b"", b"extra": b""}, "unknown field"),
])
def test_malformed_stream_entries_raise_decode_error(fields, why):
    with pytest.raises(DecodeError) as caught:
        frames_from_fields(fields)
    assert caught.value.reason == "carriage", why


def test_packed_value_layout_is_magic_count_lengths_then_aligned_frames():
    frames = [b"head", b"abcdefghij", b""]
    value = bytes(pack_frames(frames))
    assert value[:4] == b"ARF\x01"
    assert struct.unpack_from("<I", value, 4) == (3,)
    assert struct.unpack_from("<3Q", value, 8) == (4, 10, 0)
    assert value[32:36] == b"head" and value[40:50] == b"abcdefghij"
    assert len(value) == packed_size(frames) == 56
    assert [bytes(f) for f in unpack_frames(value)] == frames


def test_unpacked_arrays_are_aligned_views_on_the_received_value():
    frames = encode(Event({}, {"odd": b"123", "image": np.ones((64, 64), np.float64)}),
                    src="s", seq=0, time=0.0)
    value = bytes(pack_frames(frames))
    out = unpack_frames(value)
    assert all(frame.obj is value for frame in out)  # no copy
    message, _ = decode(out)
    image = message.payload["image"]
    assert image.flags.aligned and np.array_equal(image, np.ones((64, 64)))
    assert image.ctypes.data % ALIGN == 0


def test_pack_reuses_a_buffer_that_is_large_enough():
    buffer = bytearray(1024)
    view = pack_frames([b"header", b"x" * 100], buffer)
    assert view.obj is buffer
    grown = pack_frames([b"header", b"x" * 5000], buffer)
    assert grown.obj is not buffer and len(grown) == packed_size([b"header", b"x" * 5000])


@pytest.mark.parametrize("value, why", [
    (b"", "empty"),
    (b"hello world, not arroyo", "no magic"),
    (b"ARF\x02" + bytes(12), "other carriage version"),
    (b"ARF\x01" + struct.pack("<I", 0), "no frames"),
    (b"ARF\x01" + struct.pack("<I", 1000), "count beyond the value"),
    (b"ARF\x01" + struct.pack("<IQ", 1, 100) + bytes(8), "frame beyond the value"),
    (bytes(pack_frames([b"head"])) + bytes(16), "trailing bytes"),
])
def test_malformed_packed_values_raise_decode_error(value, why):
    with pytest.raises(DecodeError) as caught:
        unpack_frames(value)
    assert caught.value.reason == "carriage", why


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=8))
def test_pack_unpack_round_trip(frames):
    assert [bytes(f) for f in unpack_frames(bytes(pack_frames(frames)))] == frames


@given(st.binary(max_size=200))
def test_unpack_raises_only_decode_error_on_any_bytes(value):
    try:
        unpack_frames(b"ARF\x01" + value)
    except DecodeError:
        pass


def test_start_message_rides_in_a_single_header_field():
    fields = stream_fields(encode(Start({"run": "r"}), src="s", seq=0))
    assert list(fields) == [b"v", b"h"]
