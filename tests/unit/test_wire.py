"""Wire format v1: round trips over every allowed dtype, and every reason decode rejects."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from arroyo_core import DecodeError, EncodeError, Event, Limits, Start, Stop, decode, encode

ORDERED = [f"{order}{kind}{size}" for order in "<>"
           for kind, sizes in (("i", (2, 4, 8)), ("u", (2, 4, 8)), ("f", (2, 4, 8)), ("c", (8, 16)))
           for size in sizes]
TIMES = [f"{order}{kind}8{unit}" for order in "<>" for kind in "mM"
         for unit in ("", "[Y]", "[D]", "[s]", "[ms]", "[ns]", "[as]", "[25s]")
         if unit or kind == "m"]  # a datetime needs a unit (docs/protocol.md section 4)
DTYPES = ["|b1", "|i1", "|u1", "|S1", "|S7", "<U1", ">U3", *ORDERED, *TIMES]


def sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Arbitrary (valid) values of ``dtype``: random bytes, except where not every byte is."""
    dt = np.dtype(dtype)
    count = math.prod(shape)
    raw = np.random.default_rng(7).integers(0, 256, count * dt.itemsize, dtype=np.uint8)
    if dt.kind == "b":
        raw &= 1
    if dt.kind == "U":
        raw = np.random.default_rng(7).integers(32, 0x10FFFF, count * dt.itemsize // 4,
                                                dtype=np.uint32).astype(f"{dt.byteorder}u4")
    return raw.view(dt).reshape(shape)


def roundtrip(payload: dict, **kwargs) -> tuple[Event, tuple]:
    frames = encode(Event({"k": 1}, payload), src="s", seq=5, time=2.5, **kwargs)
    message, envelope = decode([bytes(f) for f in frames])
    return message, envelope


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype.str == np.asarray(want).dtype.str
    assert got.shape == np.shape(want)
    assert got.tobytes() == np.ascontiguousarray(want).tobytes()  # bitwise: NaN-safe
    assert not got.flags.writeable


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3), (2, 0, 4), (1, 1, 1, 3)])
def test_every_dtype_and_shape_round_trips(dtype, shape):
    array = sample(dtype, shape)
    message, envelope = roundtrip({"a": array})
    assert_same(message.payload["a"], array)
    assert tuple(envelope) == ("s", 5, 2.5)
    assert message.meta == {"k": 1}


@pytest.mark.parametrize("view", [
    lambda a: a[:, ::2],          # strided
    lambda a: a.T,                # Fortran order
    lambda a: a[::-1, ::-3],      # negative strides
    lambda a: a[1:3, 2],          # 1-D column
    lambda a: a[2, 3],            # numpy scalar
], ids=["strided", "transposed", "negative", "column", "scalar"])
@pytest.mark.parametrize("dtype", [">u2", "<f8", "<M8[ns]", "|b1", "<U2"])
def test_non_contiguous_input_round_trips(view, dtype):
    part = view(sample(dtype, (4, 6)))
    message, _ = roundtrip({"a": part})
    assert_same(message.payload["a"], part)


def test_contiguous_arrays_are_not_copied_by_encode():
    array = np.arange(12, dtype="<u2").reshape(3, 4)
    frames = encode(Event({}, {"a": array}), src="s", seq=0, time=0.0)
    assert np.shares_memory(frames[1], array)


@given(hnp.arrays(
    dtype=st.one_of(hnp.integer_dtypes(endianness="?"), hnp.unsigned_integer_dtypes(endianness="?"),
                    hnp.floating_dtypes(endianness="?", sizes=(16, 32, 64)),
                    hnp.complex_number_dtypes(endianness="?", sizes=(64, 128)),
                    hnp.boolean_dtypes(), hnp.datetime64_dtypes(endianness="?"),
                    hnp.timedelta64_dtypes(endianness="?"), hnp.byte_string_dtypes(min_len=1),
                    hnp.unicode_string_dtypes(endianness="?", min_len=1)),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)))
@settings(max_examples=150, deadline=None)
def test_any_allowed_array_round_trips(array):
    message, _ = roundtrip({"a": array})
    assert_same(message.payload["a"], array)


def test_bytes_entries_and_several_arrays_round_trip():
    payload = {"raw": b"\x00\x01binary", "empty": b"", "ba": bytearray(b"xy"),
               "mv": memoryview(np.arange(6, dtype="<u2").reshape(2, 3)),
               "strided": memoryview(b"abcdef")[::2], "img": np.ones((2, 2), ">f4")}
    message, _ = roundtrip(payload)
    got = message.payload
    assert list(got) == list(payload)
    assert bytes(got["raw"]) == b"\x00\x01binary" and bytes(got["empty"]) == b""
    assert bytes(got["ba"]) == b"xy" and bytes(got["strided"]) == b"ace"
    assert bytes(got["mv"]) == np.arange(6, dtype="<u2").tobytes()
    assert all(got[k].readonly for k in ("raw", "empty", "ba", "mv", "strided"))
    assert_same(got["img"], payload["img"])


@pytest.mark.parametrize("message", [Start({"run": 1, "nested": {"a": [1, 2.5, None, b"x"]}}),
                                     Stop({}), Event({"frame": np.int64(3), "t": (1, 2)}, {})])
def test_start_stop_and_empty_event_round_trip(message):
    frames = encode(message, src="sender", seq=2**64 - 1, time=None)
    assert len(frames) == 1
    got, envelope = decode(frames)
    assert type(got) is type(message)
    assert envelope.src == "sender" and envelope.seq == 2**64 - 1
    assert isinstance(envelope.time, float) and envelope.time > 1.6e9  # defaulted to now
    assert msgpack.packb(got.meta) == msgpack.packb(message.meta, default=lambda o: o.item())


def test_zmq_frames_decode_to_read_only_views():
    """Received zmq Frames are writable buffers; what decode returns must not be."""
    array = np.arange(6, dtype="<i4").reshape(2, 3)
    frames = [zmq.Frame(bytes(f)) for f in encode(Event({}, {"a": array, "b": b"xyz"}),
                                                  src="s", seq=0, time=0.0)]
    message, _ = decode(frames)
    assert_same(message.payload["a"], array)
    assert message.payload["b"].readonly and bytes(message.payload["b"]) == b"xyz"


@pytest.mark.parametrize("payload", [
    {"o": np.array([1, "x"], dtype=object)},
    {"v": np.zeros(2, dtype=[("a", "<i4")])},
    {"zero-unit": np.zeros(2, dtype="M8[0s]")},
    {"no-unit": np.zeros(2, dtype="M8")},
    {"long": np.zeros(1, dtype="S1000000")},
    {3: np.zeros(2)},
], ids=["object", "void", "M8[0s]", "M8", "S1000000", "int-name"])
def test_encode_refuses_what_cannot_be_decoded(payload):
    with pytest.raises(EncodeError):
        encode(Event({}, payload), src="s", seq=0)


@pytest.mark.parametrize("kwargs", [dict(src=1, seq=0), dict(src="s", seq=-1),
                                    dict(src="s", seq=2**64), dict(src="s", seq=1.0)])
def test_encode_refuses_bad_envelopes(kwargs):
    with pytest.raises(EncodeError):
        encode(Start({}), **kwargs)


@pytest.mark.parametrize("meta", [{"f": lambda: 0}, None, {"x": {1, object()}}])
def test_encode_refuses_bad_metadata(meta):
    with pytest.raises(EncodeError):
        encode(Start(meta), src="s", seq=0)


@pytest.mark.parametrize("meta", [
    {b"run": 1}, {1: "x"}, {None: 1}, {(1, 2): "x"}, {"a": {"b": {b"c": 1}}},
    {"a": [1, {2.5: "x"}]}, {"a": ({True: 1},)},
], ids=["bin", "int", "nil", "array", "nested-bin", "in-a-list", "in-a-tuple"])
def test_encode_refuses_map_keys_that_are_not_str(meta):
    """docs/protocol.md 3.1: map keys are str at every depth; the encoder never writes others."""
    with pytest.raises(EncodeError, match="map keys must be str"):
        encode(Start(meta), src="s", seq=0)


def test_str_subclass_keys_and_nested_str_keys_are_encoded():
    meta = {np.str_("run"): 1, "nested": [{"a": ({"b": None},)}]}
    got, _ = decode(encode(Start(meta), src="s", seq=0))
    assert got.meta == {"run": 1, "nested": [{"a": [{"b": None}]}]}


def _keys(value) -> list:
    """Every map key in a msgpack value, at any depth."""
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


FOREIGN_META = st.recursive(
    st.one_of(st.integers(0, 9), st.text(max_size=3), st.binary(max_size=3)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
        st.one_of(st.text(max_size=3), st.binary(max_size=3)), inner, max_size=3)),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.one_of(st.text(max_size=3), st.binary(max_size=3)), FOREIGN_META,
                       max_size=3))
def test_bin_keys_are_rejected_so_decode_then_encode_never_writes_one(meta):
    """A sender that writes bin keys (msgpack-python's ``strict_map_key`` lets them through)
    is rejected as malformed, so a service that forwards what it decoded cannot re-emit them."""
    received = frames(header(kind="start", arrays=[], meta=meta))
    has_bin_key = any(isinstance(k, bytes) for k in _keys(meta))
    try:
        message, envelope = decode(received)
    except DecodeError as exc:
        assert has_bin_key and exc.reason == "msgpack" and "map keys must be str" in str(exc)
        return
    assert not has_bin_key
    forwarded = encode(message, src=envelope.src, seq=envelope.seq, time=envelope.time)
    head = msgpack.unpackb(forwarded[0], raw=False, strict_map_key=False)
    assert all(isinstance(k, str) for k in _keys(head))


# --- every reason decode gives -------------------------------------------------------------

def header(**fields) -> dict:
    base = {"v": 1, "kind": "event", "src": "s", "seq": 0, "time": 0.0, "meta": {},
            "arrays": [["a", "<u2", [2]]]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not DELETE}


DELETE = object()


def frames(head: dict | bytes, *payload: bytes) -> list[bytes]:
    packed = head if isinstance(head, bytes) else msgpack.packb(head, use_bin_type=True)
    return [packed, *payload]


GOOD = frames(header(), b"\x01\x00\x02\x00")
NESTED = b"\x91" * 1100 + b"\x90"

CASES = {
    "frames": [
        [],
        frames(header(), b"1234", b"extra"),                         # extra frame
        frames(header(arrays=[["a", "<u2", [2]], ["b", "|u1", [1]]]), b"1234"),  # missing one
        frames(header(kind="start", arrays=[]), b"x"),                # a frame on a start
    ],
    "size": [
        (frames(header(), b"\x00" * 4), Limits(max_message_bytes=20)),
        (frames(header(meta={"x": "y" * 200}), b"\x00" * 4), Limits(max_header_bytes=100)),
        (frames(header(arrays=[["a", "|u1", [1]]] * 3), b"x", b"y", b"z"), Limits(max_arrays=2)),
    ],
    "msgpack": [
        frames(b"\xc1"),                                               # never-used byte
        frames(b"\x87\xa1v"),                                          # truncated
        frames(msgpack.packb(header(kind="start", arrays=[])) + b"\x00"),  # trailing byte
        frames(msgpack.packb(header(kind="start", arrays=[], src="ab")).replace(b"\xa2ab",
                                                                                b"\xa2\xff\xfe")),
        frames(header(kind="start", arrays=[], meta={1: "int key"})),
        frames(header(kind="start", arrays=[], meta={b"run": "bin key"})),
        frames(header(kind="start", arrays=[], meta={"a": [{"b": {b"c": 1}}]})),  # nested
        frames(header(kind="start", arrays=[], other={b"k": 1})),     # in a key receivers ignore
        frames({**header(kind="start", arrays=[]), b"extra": 1}),    # in the header map itself
        frames(header(kind="start", arrays=[], meta={"e": msgpack.ExtType(5, b"x")})),
        frames(header(kind="start", arrays=[], meta={"t": [msgpack.Timestamp(1, 2)]})),
        frames(header(kind="start", arrays=[], meta={"t": msgpack.Timestamp(2**40)})),
        frames(header(kind="start", arrays=[], meta={"t": msgpack.Timestamp(1, 1)})),
        frames(NESTED),
    ],
    "header": [
        frames(msgpack.packb([1, "event"])),
        frames(header(kind="message")), frames(header(kind=None)), frames(header(kind=b"event")),
        frames(header(meta=DELETE), b"1234"), frames(header(meta=[]), b"1234"),
        frames(header(arrays={}), b"1234"), frames(header(src=b"s"), b"1234"),
        frames(header(src=DELETE), b"1234"), frames(header(seq=-1), b"1234"),
        frames(header(seq=True), b"1234"), frames(header(seq=1.0), b"1234"),
        frames(header(time=1), b"1234"), frames(header(time=DELETE), b"1234"),
        frames(header(kind="stop"), b"1234"),                          # arrays on a stop
        frames(header(arrays=[["a", "<u2"]]), b"1234"),
        frames(header(arrays=[[1, "<u2", [2]]]), b"1234"),
        frames(header(arrays=[["a", "<u2", 2]]), b"1234"),
        frames(header(arrays=["a"]), b"1234"),
        frames(header(arrays=[["a", "|u1", [1]], ["a", "|u1", [1]]]), b"x", b"y"),  # same name
        frames(header(arrays=[["a", "<u2", [2], "extra"]]), b"1234"),
    ],
    "version": [
        frames(header(v=2), b"1234"), frames(header(v=DELETE), b"1234"),
        frames(header(v=True), b"1234"), frames(header(v=1.0), b"1234"),
        frames(header(v="1"), b"1234"), frames(header(v=[[[[[[1]]]]]]), b"1234"),
    ],
    "dtype": [frames(header(arrays=[["a", text, [1]]]), b"\x00" * 8) for text in (
        "|O8", "|V8", "<O", "O", "object", "|S0", "<U0", "<u3", "<c4", "<i16", "|u2", "<u1",
        "<b1", "<S8", "=u2", "<M8[1s]", "<M8[0s]", "<M8[02s]", "<M8[s", "<M8[xyz]",
        "<M8[99999999999s]", "<M8", ">M8", "<u8 ", "u8", "<u2,<u2", "", 8, None, ["<u8"], b"<u8",
    )],
    "shape": [
        frames(header(arrays=[["a", "|u1", [-1]]]), b""),
        frames(header(arrays=[["a", "|u1", [1.0]]]), b"x"),
        frames(header(arrays=[["a", "|u1", [True]]]), b"x"),
        frames(header(arrays=[["a", "|u1", ["1"]]]), b"x"),
        frames(header(arrays=[["a", "|u1", [1] * 33]]), b"x"),
        frames(header(arrays=[["a", "bytes", []]]), b""),
        frames(header(arrays=[["a", "bytes", [1, 1]]]), b"x"),
        frames(header(arrays=[["a", "<u2", [0, 2**62]]]), b""),         # empty, but too big
        frames(header(arrays=[["a", "|u1", [0, 2**63]]]), b""),
        frames(header(arrays=[["a", "<f8", [0, 2**40, 2**40]]]), b""),
    ],
    "length": [
        frames(header(), b"123"), frames(header(), b"12345"), frames(header(), b""),
        frames(header(arrays=[["a", "bytes", [3]]]), b"ab"),
        frames(header(arrays=[["a", "<U2", [1]]]), b"\x00" * 4),
        frames(header(arrays=[["a", "<u2", [2**32, 2**32]]]), b"\x00" * 8),
    ],
    "value": [
        frames(header(arrays=[["a", "<U1", [2]]]), b"a\x00\x00\x00\x00\x00\x11\x00"),
        frames(header(arrays=[["a", ">U1", []]]), b"\xff\xff\xff\xff"),
    ],
}


@pytest.mark.parametrize("reason, case", [(reason, case) for reason, cases in CASES.items()
                                          for case in cases])
def test_decode_rejects_with_reason(reason, case):
    framelist, limits = case if isinstance(case, tuple) else (case, Limits())
    with pytest.raises(DecodeError) as info:
        decode(framelist, limits)
    assert info.value.reason == reason, str(info.value)
    assert len(str(info.value)) < 400  # details stay readable, whatever the input held


def test_cases_start_from_a_valid_message():
    """The rejection cases above are one fault away from this message, which decodes."""
    message, _ = decode(GOOD)
    assert message.payload["a"].tolist() == [1, 2]


@pytest.mark.parametrize("extra", [{"future": [1, 2]}, {"time": 1.5, "note": None}])
def test_decode_ignores_unknown_header_keys(extra):
    message, envelope = decode(frames({**header(), **extra}, b"\x01\x00\x02\x00"))
    assert message.payload["a"].tolist() == [1, 2]


def test_decode_accepts_other_valid_msgpack_spellings():
    """Any key order, wide ints and a float 32 time are still the same header."""
    packer = msgpack.Packer(use_single_float=True)
    head = dict(reversed(list(header(seq=7).items())))
    message, envelope = decode([packer.pack(head), b"\x01\x00\x02\x00"])
    assert envelope.seq == 7 and envelope.time == 0.0
    wide = msgpack.packb(header(kind="start", arrays=[], seq=0)).replace(b"\xa3seq\x00",
                                                                         b"\xa3seq\xcf" + bytes(8))
    assert decode([wide])[1].seq == 0


def test_limits_allow_exactly_their_bound():
    ok = frames(header(arrays=[["a", "|u1", [1]], ["b", "|u1", [1]]]), b"x", b"y")
    total = sum(map(len, ok))
    decode(ok, Limits(max_message_bytes=total, max_header_bytes=len(ok[0]), max_arrays=2))
    decode(frames(header(arrays=[["a", "|u1", [1] * 32]]), b"x"), Limits(max_ndim=32))
    # an empty array may claim as much extent as a full one could have, not more
    decode(frames(header(arrays=[["a", "<u2", [0, 2**27]]]), b""))
    with pytest.raises(DecodeError, match="shape"):
        decode(frames(header(arrays=[["a", "<u2", [2**27 + 1, 0]]]), b""))
    decode(frames(header(arrays=[["a", "<u2", [0, 50]]]), b""), Limits(max_message_bytes=100))
    with pytest.raises(DecodeError, match="shape"):
        decode(frames(header(arrays=[["a", "<u2", [0, 51]]]), b""), Limits(max_message_bytes=100))


def nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize("levels, ok", [(1024, True), (1025, False)])
def test_header_nesting_limit(levels, ok):
    """docs/protocol.md: at most 1024 levels, the header map and meta counting as two."""
    head = frames(header(kind="start", arrays=[], meta={"d": nested(levels - 2)}))
    if ok:
        got = decode(head)[0].meta["d"]  # == on it would exceed Python's recursion limit
        assert msgpack.packb(got) == msgpack.packb(nested(levels - 2))
    else:
        with pytest.raises(DecodeError, match="msgpack"):
            decode(head)
