"""Every message kind, dtype, byte order, shape and size up to 17 MiB round-trips bit for
bit between processes: this test sends with ZmqPublisher, an ``arroyo operator``
pass-through service forwards, and this test receives with ZmqListener."""

from __future__ import annotations

import numpy as np
import pytest

from arroyo_core.link import ZmqPublisher
from arroyo_core.message import Event, Start, Stop
from services.processes import ServiceProcess
from tests.support.addresses import IpcDirectory
from tests.support.messages import assert_same
from tests.support.receiver import Receiver

pytestmark = pytest.mark.integration

MiB = 2**20
DTYPES = ["|b1", "|i1", "|u1", "<i2", ">i2", "<u2", ">u2", "<i4", ">i4", "<u4", ">u4",
          "<i8", ">i8", "<u8", ">u8", "<f2", ">f2", "<f4", ">f4", "<f8", ">f8", "<f16",
          ">f16", "<c8", ">c8", "<c16", ">c16", "<c32", "<m8[ns]", ">m8[us]", "<M8[s]",
          ">M8[D]", "|S7", "<U5", ">U5"]
SHAPES = [(), (0,), (3, 0, 2), (7,), (3, 5), (2, 3, 4), (2, 3, 4, 5)]
rng = np.random.default_rng(2)


def random_array(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Random bytes seen as ``dtype``: NaN patterns, odd bools and padding bytes included."""
    dtype_ = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if dtype_.kind == "U":  # text: any code point up to U+10FFFF, in the given byte order
        units = rng.integers(0, 0x110000, size=count * dtype_.itemsize // 4, dtype=np.uint32)
        return units.astype(dtype_.byteorder + "u4").view(dtype_).reshape(shape)
    raw = rng.integers(0, 256, size=count * dtype_.itemsize, dtype=np.uint8)
    return raw.view(dtype_).reshape(shape)


class Relay:
    """This process -> operator service (pass-through) -> this process."""

    def __init__(self, pattern: str) -> None:
        in_pattern = {"push": "pull", "pub": "sub"}[pattern]
        self.ipc = IpcDirectory()
        hop1, hop2 = self.ipc("hop1"), self.ipc("hop2")
        self.operator = ServiceProcess("operator", [
            "--in", ">" + hop1, "--in-pattern", in_pattern,
            "--out", "@" + hop2, "--out-pattern", pattern], name=f"relay-{pattern}")
        self.sender: ZmqPublisher | None = None
        self.receiver: Receiver | None = None
        self.operator.wait_ready()
        self.sender = ZmqPublisher("@" + hop1, pattern=pattern, peer_timeout=15)
        self.sender.open()
        self.receiver = Receiver(">" + hop2, in_pattern)
        # A Start first: on pub both XPUBs wait at a Start until their subscriber is in.
        self.roundtrip([Start({"warm-up": True})])

    def roundtrip(self, messages: list) -> list:
        assert self.sender is not None and self.receiver is not None
        for message in messages:
            self.sender.publish(message)
        return self.receiver.take(len(messages))

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.close()
        if self.sender is not None:
            self.sender.abandon()
            self.sender.close()
        self.operator.stop(timeout=10)
        self.ipc.remove()


@pytest.fixture(scope="module", params=["push", "pub"])
def relay(request):
    relay = Relay(request.param)
    yield relay
    try:
        ledger = relay.receiver.listener.stats()
        assert ledger["missing"] == 0 and ledger["duplicates"] == 0 and not ledger["malformed"]
    finally:
        relay.close()


def test_start_and_stop_carry_their_metadata(relay):
    meta = {"run": "r-1", "shape": [512, 512], "dtype": ">u2", "nested": {"a": [1, 2.5, None]},
            "big": 2**63 - 1, "negative": -(2**40), "unicode": "Å ström ✓", "flag": True,
            "blob": b"\x00\xff", "empty": {}}
    sent = [Start(meta), Event({"frame": 0}), Stop({"frames_sent": 1, "aborted": False})]
    for one, got in zip(sent, relay.roundtrip(sent), strict=True):
        assert_same(one, got)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_and_shape_round_trips(relay, dtype):
    payload = {f"shape{i}": random_array(dtype, shape) for i, shape in enumerate(SHAPES)}
    sent = Event({"dtype": dtype}, payload)
    [got] = relay.roundtrip([sent])
    assert_same(sent, got)


def test_non_contiguous_arrays_arrive_as_their_c_order_values(relay):
    base = random_array(">i4", (8, 9))
    payload = {"strided": base[::2, 1::3], "fortran": np.asfortranarray(base),
               "transposed": base.T, "reversed": base[::-1, ::-1],
               "broadcast": np.broadcast_to(random_array("<f8", (1, 5)), (4, 5)),
               "column": base[:, 3]}
    assert not any(a.flags.c_contiguous for a in payload.values())
    sent = Event({}, payload)
    [got] = relay.roundtrip([sent])
    assert_same(sent, got)
    for name, array in payload.items():
        assert np.array_equal(got.payload[name], array), name


def test_raw_bytes_payloads_round_trip(relay):
    numbers = np.arange(1000, dtype="<u8")
    sent = Event({"kind": "raw"}, {
        "bytes": bytes(range(256)) * 3, "empty": b"", "bytearray": bytearray(b"\x01\x02\x03"),
        "memoryview": memoryview(numbers), "big": rng.bytes(3 * MiB + 1),
        "array": random_array("<f4", (10, 10))})
    [got] = relay.roundtrip([sent])
    assert_same(sent, got)


@pytest.mark.parametrize("shape,dtype", [
    ((1024,), "|u1"),               # 1 KiB, below pyzmq's copy threshold
    ((2**14 - 1,), "<f4"),           # just under 64 KiB
    ((2**14 + 1,), ">f4"),           # just over 64 KiB
    ((512, 1024), ">u2"),            # 1 MiB
    ((2048, 4096), "<u2"),           # 16 MiB
    ((17 * MiB + 3,), "|u1"),        # over 16 MiB, odd length
    ((2, 1024, 1024), "<c16"),       # 32 MiB, 3-d
], ids=["1KiB", "64KiB-", "64KiB+", "1MiB", "16MiB", "17MiB+3", "32MiB"])
def test_large_arrays_round_trip(relay, shape, dtype):
    sent = [Event({"size": int(np.prod(shape)) * np.dtype(dtype).itemsize},
                  {"image": random_array(dtype, shape)}) for _ in range(2)]
    for one, got in zip(sent, relay.roundtrip(sent), strict=True):
        assert_same(one, got)


def test_many_messages_arrive_in_order(relay):
    sent = [Start({"run": "order"})]
    sent += [Event({"frame": i}, {"v": np.full(i % 5, i, dtype="<i8")}) for i in range(300)]
    sent += [Stop({"frames_sent": 300})]
    got = relay.roundtrip(sent)
    assert [m.meta for m in got] == [m.meta for m in sent]
    for one, other in zip(sent, got, strict=True):
        assert_same(one, other)
