"""The test vectors of docs/protocol.md, read out of the document itself.

The hex dumps in the document are the expected bytes, so the specification and the code
cannot drift apart: changing either without the other fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from arroyo_core import Event, Start, Stop, decode, encode
from arroyo_core.batch import EventBatch, decode_all
from arroyo_core.wire import DEFAULT_LIMITS

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
SRC = "det-1"

# What section 7 of the document says each vector holds: (message, seq, time).
VECTORS = {
    "start": (Start({"run": 7, "detector": "sim"}), 0, 1700000000.25),
    "event": (Event({"frame": 0}, {"image": np.arange(6, dtype=">u2").reshape(2, 3),
                                   "gain": np.array(1.5, dtype="<f4")}), 1, 1700000000.5),
    "event-bytes": (Event({"frame": 1, "ok": True},
                          {"note": b"hi!", "mask": np.zeros((0, 4), dtype="|b1")}),
                    2, 1700000000.75),
    "stop": (Stop({"frames_sent": 2}), 3, 1700000001.0),
}

# Section 9's batch: its Events, the first one's seq, and time.
BATCH_VECTORS = {
    "batch": ([Event({"frame": 4}, {"image": np.arange(3, dtype="<u2")}),
               Event({"frame": 5}, {"note": b"ok", "gain": np.array(2.0, dtype="<f4")})],
              4, 1700000002.0),
}

_BLOCK = re.compile(r"^```hexdump\n(.*?)^```", re.S | re.M)
_FRAME = re.compile(r"^frame (\d+): .*, (\d+) bytes$")
_HEX = re.compile(r"^[0-9a-f]{2}$")


def parse_vectors(text: str) -> dict[str, list[bytes]]:
    """Return {vector name: frames} from the ```hexdump blocks of ``text``."""
    vectors: dict[str, list[bytes]] = {}
    for block in _BLOCK.findall(text):
        lines = block.splitlines()
        assert lines[0].startswith("# vector: "), f"hexdump block without a name: {lines[0]!r}"
        name = lines[0].removeprefix("# vector: ").strip()
        frames: list[bytearray] = []
        declared: list[int] = []
        for line in lines[1:]:
            frame_line = _FRAME.match(line)
            if frame_line:
                assert int(frame_line[1]) == len(frames), f"{name}: frames out of order"
                frames.append(bytearray())
                declared.append(int(frame_line[2]))
                continue
            offset, *rest = line.split()
            assert int(offset, 16) == len(frames[-1]), f"{name}: offset {offset} out of step"
            # Hex bytes run until the |ASCII| column, which always starts with "|".
            for token in rest:
                if not _HEX.match(token):
                    assert token.startswith("|"), f"{name}: cannot read {line!r}"
                    break
                frames[-1].append(int(token, 16))
        assert [len(f) for f in frames] == declared, f"{name}: byte counts differ from labels"
        assert name not in vectors, f"vector {name} appears twice"
        vectors[name] = [bytes(f) for f in frames]
    return vectors


@pytest.fixture(scope="module")
def documented() -> dict[str, list[bytes]]:
    return parse_vectors(PROTOCOL.read_text(encoding="utf-8"))


def test_document_holds_every_vector(documented):
    assert sorted(documented) == sorted([*VECTORS, *BATCH_VECTORS])


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_encode_writes_the_documented_bytes(documented, name):
    message, seq, time = VECTORS[name]
    frames = [bytes(f) for f in encode(message, src=SRC, seq=seq, time=time)]
    assert frames == documented[name]


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_decode_reads_the_documented_bytes(documented, name):
    expected, seq, time = VECTORS[name]
    message, envelope = decode(documented[name])
    assert type(message) is type(expected)
    assert message.meta == expected.meta
    assert tuple(envelope) == (SRC, seq, time)
    if isinstance(expected, Event):
        assert list(message.payload) == list(expected.payload)
        for key, want in expected.payload.items():
            got = message.payload[key]
            if isinstance(want, bytes):
                assert isinstance(got, memoryview) and bytes(got) == want
            else:
                assert got.dtype.str == want.dtype.str and got.shape == want.shape
                assert np.array_equal(got, want)


def test_parser_rejects_a_doctored_dump():
    """The parser must notice a missing byte, or the tests above could pass on a bad dump."""
    text = PROTOCOL.read_text(encoding="utf-8")
    doctored = text.replace("0000  00 00 c0 3f", "0000  00 00 c0", 1)
    assert doctored != text
    with pytest.raises(AssertionError, match="byte counts"):
        parse_vectors(doctored)


def _same_payload(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for key, value in want.items():
        if isinstance(value, bytes):
            assert isinstance(got[key], memoryview) and bytes(got[key]) == value
        else:
            assert got[key].dtype.str == value.dtype.str and got[key].shape == value.shape
            assert np.array_equal(got[key], value)


@pytest.mark.parametrize("name", sorted(BATCH_VECTORS))
def test_batch_writes_the_documented_bytes(documented, name):
    events, seq, time = BATCH_VECTORS[name]
    batch = EventBatch()
    for event in events:
        assert batch.add(event)
    assert [bytes(f) for f in batch.frames(src=SRC, seq=seq, time=time)] == documented[name]


@pytest.mark.parametrize("name", sorted(BATCH_VECTORS))
def test_batch_reads_back_as_its_events(documented, name):
    events, seq, time = BATCH_VECTORS[name]
    decoded = decode_all(documented[name], DEFAULT_LIMITS)
    assert [tuple(envelope) for _, envelope in decoded] == [
        (SRC, seq + index, time) for index in range(len(events))]
    for (message, _), want in zip(decoded, events, strict=True):
        assert type(message) is Event and message.meta == want.meta
        _same_payload(message.payload, want.payload)
