"""Decoder fuzzing: whatever frames arrive, ``decode`` returns a usable Message or raises
DecodeError; never another exception, never a hang.

Two generators: (a) arbitrary frame lists (raw bytes, or msgpack of arbitrary values as the
header), and (b) valid encoded messages with mutations applied (bit flips, truncation, extra,
missing and swapped frames, header fields and array descriptors replaced, msgpack fragments
spliced in). ``benchmarks/fuzz_decoder.py`` runs the same generators for minutes; what it
finds becomes a case in ``REGRESSIONS`` below.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from arroyo_core import DecodeError, Event, Limits, Start, Stop, decode, encode
from arroyo_core.wire import ALLOWED_KINDS, DEFAULT_LIMITS

REASONS = {"frames", "size", "msgpack", "header", "version", "dtype", "shape", "length", "value"}
FUZZ = settings(max_examples=300, deadline=2000,  # a 2 s deadline is the hang detector
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check(frames: list[Any], limits: Limits = DEFAULT_LIMITS) -> str:
    """Decode ``frames``; return ``"ok"`` or the DecodeError reason.

    A decoded message must be fully usable: every array element readable, arrays and bytes
    read-only, and the message forwardable (re-encoded and decoded to the same content).
    Any other exception propagates: that is a bug in the decoder.
    """
    try:
        message, envelope = decode(frames, limits)
    except DecodeError as exc:
        assert exc.reason in REASONS, f"undocumented reason {exc.reason!r}"
        assert len(str(exc)) < 1000
        return exc.reason
    assert type(message) in (Start, Event, Stop)
    assert isinstance(message.meta, dict)
    src, seq, time = envelope
    assert isinstance(src, str) and type(seq) is int and 0 <= seq < 2**64
    assert isinstance(time, float)
    payload = message.payload if isinstance(message, Event) else {}
    for value in payload.values():
        if isinstance(value, memoryview):
            assert value.readonly and value.ndim == 1
            bytes(value)
        else:
            assert isinstance(value, np.ndarray) and not value.flags.writeable
            assert value.dtype.kind in ALLOWED_KINDS
            # no array claims more than a message may hold, even an empty one
            extent = value.dtype.itemsize * math.prod(n for n in value.shape if n)
            assert extent <= limits.max_message_bytes
            if value.size:
                value.tolist()  # reads every element, as any consumer would
            repr(value)
    again, envelope_again = decode(encode(message, src=src, seq=seq, time=time))
    assert type(again) is type(message) and envelope_again.src == src
    assert envelope_again.seq == seq
    assert msgpack.packb(again.meta) == msgpack.packb(message.meta)
    again_payload = again.payload if isinstance(again, Event) else {}
    assert list(again_payload) == list(payload)
    for name, value in payload.items():
        assert bytes(again_payload[name]) == bytes(value) if isinstance(value, memoryview) else (
            again_payload[name].dtype == value.dtype and again_payload[name].shape == value.shape
            and again_payload[name].tobytes() == value.tobytes())
    return "ok"


# --- strategies ---------------------------------------------------------------------------

INTS = st.one_of(st.integers(-(2**63), 2**64 - 1),
                 st.sampled_from([0, 1, -1, 2, 2**31, 2**32, 2**62, 2**63 - 1, 2**64 - 1]))
SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(), st.text(max_size=12),
                    st.binary(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=6), st.binary(max_size=4)), inner, max_size=4)),
    max_leaves=12)
META_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(  # map keys str, as senders must
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)
EXTENSIONS = st.one_of(st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
                       st.builds(msgpack.Timestamp, st.integers(0, 2**34 - 1),
                                 st.integers(0, 999_999_999)))
ODD_VALUES = st.sampled_from([VALUES] * 5 + [EXTENSIONS]).flatmap(lambda values: values)
DTYPE_TEXTS = st.one_of(
    st.sampled_from([  # never valid (first, as hypothesis favours early entries):
                     "|O8", "|V4", "|S0", "<U0", "<u3", "|u2", "<u1", "<b1", "<M8[0s]", "<M8[1s]",
                     "<M8", "<U999999", "<c4", "<i16", "=u2", "u2", "", "<M8[xx]",
                     "<M8[2147483648s]",
                     # valid:
                     "|b1", "|i1", "|u1", "<u2", ">u2", "<i8", ">f8", "<f4", "<c8", ">c16",
                     "<M8[ns]", ">m8[25s]", "<m8", "|S3", "<U1", ">U2", "bytes"]),
    st.from_regex(r"\A[<>|=][a-zA-Z][0-9]{0,3}(\[[0-9]{0,3}[a-z]{1,2}\])?\Z"),
    SCALARS)
SHAPE_ITEMS = st.one_of(SCALARS, st.integers(-3, 4), INTS)
SMALL_LIMITS = Limits(max_message_bytes=200, max_header_bytes=120, max_arrays=2, max_ndim=2)
LIMITS = st.sampled_from([DEFAULT_LIMITS, DEFAULT_LIMITS, SMALL_LIMITS])

ARRAY_DTYPES = st.one_of(
    hnp.boolean_dtypes(), hnp.integer_dtypes(endianness="?"),
    hnp.unsigned_integer_dtypes(endianness="?"),
    hnp.floating_dtypes(endianness="?", sizes=(16, 32, 64)),
    hnp.complex_number_dtypes(endianness="?", sizes=(64, 128)),
    hnp.datetime64_dtypes(endianness="?"), hnp.timedelta64_dtypes(endianness="?"),
    hnp.byte_string_dtypes(min_len=1, max_len=4),
    hnp.unicode_string_dtypes(endianness="?", min_len=1, max_len=3))
PAYLOAD_VALUES = st.one_of(
    hnp.arrays(ARRAY_DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)),
    st.binary(max_size=16))


@st.composite
def messages(draw) -> tuple[Any, str, int, float]:
    kind = draw(st.sampled_from([Start, Event, Event, Event, Event, Stop]))
    meta = draw(st.dictionaries(st.text(max_size=6), META_VALUES, max_size=3))
    arrays = st.dictionaries(st.text(max_size=5), PAYLOAD_VALUES,
                             min_size=draw(st.sampled_from([1, 1, 1, 0])), max_size=3)
    message = Event(meta, draw(arrays)) if kind is Event else kind(meta)
    return (message, draw(st.text(max_size=10)), draw(st.integers(0, 2**64 - 1)),
            draw(st.floats()))


def encoded(message: Any, src: str, seq: int, time: float) -> list[bytes]:
    return [bytes(f) for f in encode(message, src=src, seq=seq, time=time)]


def _header_edit(draw, rng, frames: list[bytes], descriptor_only: bool) -> None:
    """Replace, delete or add one header field, or one part of an array descriptor."""
    try:
        header = msgpack.unpackb(frames[0], strict_map_key=False)
    except Exception:
        return  # an earlier mutation broke it; nothing structured to edit
    if not isinstance(header, dict):
        return
    key = "arrays" if descriptor_only else rng.choice(
        ["v", "v", "kind", "src", "seq", "time", "meta", "arrays", "other"])
    arrays = header.get("arrays")
    if key == "arrays" and isinstance(arrays, list) and arrays and (
            descriptor_only or rng.random() < 0.5):
        index = rng.randrange(len(arrays))
        descriptor = arrays[index]
        if not (isinstance(descriptor, list) and len(descriptor) == 3) or rng.random() < 0.2:
            arrays[index] = draw(ODD_VALUES)
        else:
            part = rng.choice(["name", "dtype", "dtype", "shape", "shape", "shape"])
            shape = descriptor[2] if isinstance(descriptor[2], list) else []
            how = rng.choice(["item", "append", "drop", "replace", "scalar"])
            if part == "name":
                descriptor[0] = draw(st.one_of(st.text(max_size=4), SCALARS))
            elif part == "dtype":
                descriptor[1] = draw(DTYPE_TEXTS)
            elif how == "item" and shape:
                shape[rng.randrange(len(shape))] = draw(SHAPE_ITEMS)
            elif how == "append":
                shape.insert(rng.randint(0, len(shape)), draw(SHAPE_ITEMS))
            elif how == "drop" and shape:
                del shape[rng.randrange(len(shape))]
            elif how == "scalar":
                descriptor[2] = draw(SCALARS)
            else:
                descriptor[2] = draw(st.lists(SHAPE_ITEMS, max_size=4))
    elif rng.random() < 0.2:
        header.pop(key, None)
    else:
        header[key] = draw(ODD_VALUES)
    try:
        frames[0] = msgpack.packb(header, use_bin_type=rng.random() < 0.9)
    except (ValueError, TypeError, OverflowError):
        pass


MSGPACK_FRAGMENTS = [b"\xc1", b"\xd4\x01\x00", b"\xd6\xff\x00\x00\x00\x01", b"\xc7\x0c\xff",
                     b"\xdd\xff\xff\xff\xff", b"\xdf\x7f\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
                     b"\xc6\xff\xff\xff\xff", b"\x91" * 40, b"\xcf" + b"\xff" * 8,
                     b"\xa3\xff\xfe\xfd"]
# Byte-level edits almost always break the msgpack header, so the structured edits that
# reach the later checks get about half of the draws.
OPERATIONS = ["flip", "truncate", "extend", "splice", "drop", "duplicate", "insert", "swap",
              *["header"] * 3, *["descriptor"] * 4]


def mutate(draw, frames: list[bytes]) -> list[bytes]:
    """Apply 1 to 3 random mutations to a copy of ``frames``.

    Which mutation and where come from a seeded Random (uniform, where hypothesis's own
    choices would favour the first option); the values written come from strategies.
    """
    rng = draw(st.randoms(use_true_random=True))  # seeded from the example: replayable
    frames = list(frames)
    for _ in range(rng.choice([1, 1, 2, 3])):
        op = rng.choice(OPERATIONS)
        if not frames:
            frames.append(draw(st.binary(max_size=8)))
            continue
        i = rng.randrange(len(frames))
        frame = bytearray(frames[i])
        if op == "flip" and frame:
            bit = rng.randrange(8 * len(frame))
            frame[bit // 8] ^= 1 << (bit % 8)
        elif op == "truncate":
            del frame[rng.randint(0, len(frame)):]
        elif op == "extend":
            frame += draw(st.binary(min_size=1, max_size=9))
        elif op == "splice":
            at = rng.randint(0, len(frame))
            frame[at:at] = rng.choice(MSGPACK_FRAGMENTS)
        elif op == "drop":
            del frames[i]
            continue
        elif op == "duplicate":
            frames.insert(i, frames[i])
            continue
        elif op == "insert":
            frames.insert(i, draw(st.binary(max_size=16)))
            continue
        elif op == "swap":
            j = rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
            continue
        elif op in ("header", "descriptor"):
            _header_edit(draw, rng, frames, descriptor_only=op == "descriptor")
            continue
        frames[i] = bytes(frame)
    return frames


# --- the properties -----------------------------------------------------------------------

ARBITRARY_FRAMES = st.lists(st.binary(max_size=64), max_size=5)
ARBITRARY_HEADERS = st.tuples(
    st.one_of(ODD_VALUES, st.dictionaries(
        st.sampled_from(["v", "kind", "src", "seq", "time", "meta", "arrays"]),
        st.one_of(st.sampled_from([1, "event", "start", "stop", 0.0, [], {}]), ODD_VALUES))),
    st.lists(st.binary(max_size=32), max_size=3))


@FUZZ
@given(ARBITRARY_FRAMES, LIMITS)
def test_arbitrary_frames(frames, limits):
    check(frames, limits)


@FUZZ
@given(ARBITRARY_HEADERS, LIMITS)
def test_arbitrary_msgpack_headers(case, limits):
    value, payload = case
    try:
        head = msgpack.packb(value, use_bin_type=True)
    except (ValueError, TypeError, OverflowError):
        return
    check([head, *payload], limits)


@FUZZ
@given(messages(), st.data(), LIMITS)
def test_mutated_valid_messages(message, data, limits):
    frames = encoded(*message)
    assert check(frames) == "ok"  # the unmutated message is valid
    check(mutate(data.draw, frames), limits)


@st.composite
def mutated_messages(draw) -> tuple[list[bytes], Limits]:
    return mutate(draw, encoded(*draw(messages()))), draw(LIMITS)


@pytest.mark.parametrize("outcome", ["ok", "frames", "size", "msgpack", "header", "version",
                                     "dtype", "shape", "length"])
def test_mutations_reach_every_outcome(outcome):
    """The mutation generator is only as good as what it reaches: each rejection reason,
    and valid messages too (so the decoded-message checks run). The rarest take a few
    dozen examples; not one in 3000 would mean the generator has gone blind there."""
    find(mutated_messages(), lambda case: check(*case) == outcome,
         settings=settings(max_examples=3000, database=None, phases=[Phase.generate],
                           suppress_health_check=list(HealthCheck)))


# --- crashes the fuzzers found, kept as regressions ---------------------------------------

def _header(**fields: Any) -> bytes:
    base = {"v": 1, "kind": "event", "src": "s", "seq": 0, "time": 0.0, "meta": {},
            "arrays": [["a", "|u1", [1]]]}
    base.update(fields)
    return msgpack.packb(base, use_bin_type=True)


def _deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


REGRESSIONS = {
    # a datetime64 without a unit decoded, and numpy's repr of a value that is not NaT raised
    "unitless datetime": ([_header(arrays=[["a", "<M8", []]]), b"\x05" + bytes(7)], "dtype"),
    # repr() of a 1000-deep value in an error detail raised RecursionError
    "deep version": ([_header(v=_deep(1000)), b"x"], "version"),
    "deep kind": ([_header(kind=_deep(1000)), b"x"], "header"),
    "deep descriptor": ([_header(arrays=[_deep(1000)]), b"x"], "header"),
    "deep dtype": ([_header(arrays=[["a", _deep(1000), [1]]]), b"x"], "dtype"),
    "deep shape": ([_header(arrays=[["a", "|u1", _deep(1000)]]), b"x"], "shape"),
    # an empty array whose other dimensions overflow int64: numpy raised ValueError
    "empty, huge extent": ([_header(arrays=[["a", "<u2", [0, 2**62]]]), b""], "shape"),
    "empty, dimension over int64": ([_header(arrays=[["a", "|u1", [2**64 - 1, 0]]]), b""],
                                    "shape"),
    # atheris: shape (2**54, 0, 0, 2) decoded; iterating it (tolist) raised MemoryError
    "empty, 2**54 rows": ([_header(arrays=[["a", "|u1", [2**54, 0, 0, 2]]]), b""], "shape"),
    # a 'U' unit beyond U+10FFFF decoded, then reading it raised SystemError
    "U beyond U+10FFFF": ([_header(arrays=[["a", "<U1", []]]), b"\x00\x00\x11\x00"], "value"),
    # a datetime unit multiplier of 0 decoded, then comparing or sorting raised OverflowError
    "M8[0s]": ([_header(arrays=[["a", "<M8[0s]", [1]]]), bytes(8)], "dtype"),
    # msgpack decodes its timestamp extension without calling ext_hook
    "timestamp in meta": ([_header(meta={"t": msgpack.Timestamp(5)}), b"x"], "msgpack"),
    # spelled '|u2', a dtype meant "the receiver's byte order"
    "non-canonical byte order": ([_header(arrays=[["a", "|u2", [1]]]), b"xy"], "dtype"),
    # True == 1 in Python: {'v': true} passed the version check
    "boolean version": ([_header(v=True), b"x"], "version"),
    # two arrays of one name: the first was silently lost
    "duplicate name": ([_header(arrays=[["a", "|u1", [1]], ["a", "|u1", [1]]]), b"x", b"y"],
                       "header"),
    "negative seq": ([_header(seq=-1), b"x"], "header"),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name):
    frames, reason = REGRESSIONS[name]
    assert check(frames) == reason


def test_check_notices_a_broken_decoder(monkeypatch):
    """``check`` must be able to fail, or the fuzz tests above prove nothing."""
    import arroyo_core.wire as wire

    def leaky(frames, limits=DEFAULT_LIMITS):
        raise ValueError("not a DecodeError")

    monkeypatch.setattr(wire, "decode", leaky)
    monkeypatch.setitem(globals(), "decode", leaky)
    with pytest.raises(ValueError):
        check([b"\x80"])
    monkeypatch.setitem(globals(), "decode", lambda f, limits=None: (
        Event({}, {"a": np.zeros(2)}), ("s", 0, 0.0)))
    with pytest.raises(AssertionError):  # a writable array is not what decode promises
        check([b"\x80"])


def test_fuzz_is_bounded_in_time():
    """A sanity figure for the example counts above: one check is far below the deadline."""
    frames = encoded(Event({"k": 1}, {"a": np.zeros((64, 64), "<u2")}), "s", 1, 0.0)
    assert check(frames) == "ok"
    assert math.isfinite(FUZZ.deadline.total_seconds())
