"""The shm transport's pure parts: control messages read from the network, addresses,
pool names and process identities (no sockets, no pools)."""

from __future__ import annotations

import msgpack
import pytest

from arroyo_core.address import Address
from arroyo_core.errors import ConfigError, DecodeError
from arroyo_core.transports.shm import ShmTransport, control
from arroyo_core.transports.shm.attached import SlotRef
from arroyo_core.transports.shm.pool import owner_of
from arroyo_core.transports.shm.processes import Identity, alive, this_process
from arroyo_core.transports.shm.sockets import control_address


def test_a_message_round_trips_with_slot_references_and_inline_frames():
    ref = SlotRef("arroyo-shm.12.34.0", 3, 7, 64, 1000)
    head = control.message_head(9, [ref, None])
    message_id, frames, refs = control.read_message([head, b"header", b"inline"])
    assert message_id == 9 and refs == [ref, None]
    assert frames == [b"header", None, b"inline"]


@pytest.mark.parametrize("frames,reason", [
    ([b"\xc1", b"h"], "msgpack"),
    ([msgpack.packb({"a": 1}), b"h"], "header"),
    ([msgpack.packb([1, [None]]), b"h"], "frames"),
    ([msgpack.packb([1, []]), b"h", b"extra"], "frames"),
    ([msgpack.packb([1, [["p", 1, 2, 3]]]), b"h"], "header"),
    ([msgpack.packb([1, [["p", -1, 2, 3, 4]]]), b"h"], "header"),
    ([msgpack.packb([1, [[b"p", 1, 2, 3, 4]]]), b"h"], "header"),
    ([b"only"], "frames"),
])
def test_malformed_messages_are_decode_errors_by_reason(frames, reason):
    with pytest.raises(DecodeError) as error:
        control.read_message(frames)
    assert error.value.reason == reason


def test_hello_and_took_read_back_and_bad_ones_are_refused():
    kind, body = control.hello(Identity(5, 6), "host")
    assert kind == control.HELLO and control.read_hello(body) == (Identity(5, 6), "host")
    assert control.read_hello(b"\xc1") is None
    assert control.read_hello(msgpack.packb({"pid": "5", "start": 6, "host": "h"})) is None
    assert control.read_took(control.took([1, 2])[1]) == [1, 2]
    assert control.read_took(msgpack.packb([1, "x", 3])) == [1, 3]
    assert control.read_took(b"\xc1") == []


def test_reliable_answers_read_back_and_bad_ones_are_refused():
    kind, body = control.answer("ack", "a1b2-c3", 41)
    assert kind == control.ANSWER and control.read_answer(body) == ("ack", "a1b2-c3", 41)
    assert control.read_answer(control.answer("hello", "", 0)[1]) == ("hello", "", 0)
    for bad in (b"\xc1", msgpack.packb(["nack", "s", 1]), msgpack.packb(["ack", "s", -1]),
                msgpack.packb(["ack", b"s", 1]), msgpack.packb(["ack", "s"]),
                msgpack.packb({"ack": 1})):
        assert control.read_answer(bad) is None


def test_reliable_shm_is_push_and_pull_only():
    transport = ShmTransport()
    out, into = Address.parse("@shm://127.0.0.1:*", True), Address.parse(">shm:///a/b", False)
    with pytest.raises(ConfigError, match="pub is not reliable yet"):
        transport.sender(out, {"reliable": True, "pattern": "pub"}, "out")
    with pytest.raises(ConfigError, match="sub is not reliable yet"):
        transport.receiver(into, {"reliable": True, "pattern": "sub"}, "in")


@pytest.mark.parametrize("text,expected", [
    ("@shm://*:5555", "tcp://*:5555"),
    (">shm://127.0.0.1:5555", "tcp://127.0.0.1:5555"),
    ("@shm://127.0.0.1:*", "tcp://127.0.0.1:*"),
    (">shm://[::1]:5555", "tcp://[::1]:5555"),
    ("shm:///run/arroyo/hop1", "ipc:///run/arroyo/hop1"),
])
def test_control_addresses(text, expected):
    assert control_address(Address.parse(text, bind_by_default=True)) == expected


@pytest.mark.parametrize("text", ["shm://host", "shm://host:5555/path", "shm://"])
def test_bad_shm_addresses_are_config_errors(text):
    with pytest.raises(ConfigError):
        control_address(Address.parse(text, bind_by_default=True))


def test_pool_names_name_their_owner_and_nothing_else_is_one():
    assert owner_of("arroyo-shm.12.345.0") == Identity(12, 345)
    for name in ("arroyo-shm.12.345", "../arroyo-shm.1.2.3", "arroyo-shm.1.2.3/x", "other"):
        assert owner_of(name) is None


def test_a_process_is_alive_only_with_its_own_start_time():
    me = this_process()
    assert alive(me)
    assert not alive(Identity(me.pid, me.start + 1))  # the same pid, another process
