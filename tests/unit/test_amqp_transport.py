"""The AMQP transport's pure parts: the packed body (docs/protocol.md sections 8.2 and 11),
what an address names, names with the password hidden, and which acknowledgements go to
the broker. No broker here (tests/integration/test_amqp*.py use a real one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arroyo_core.address import Address
from arroyo_core.errors import ConfigError
from arroyo_core.ledger import InputLedger
from arroyo_core.packed import pack_bytes, pack_frames, unpack_frames

PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

pytest.importorskip("pika")
from arroyo_core.transports.amqp import AmqpTransport  # noqa: E402
from arroyo_core.transports.amqp.connection import ClientSettings, redact  # noqa: E402
from arroyo_core.transports.amqp.receiver import AmqpReceiver  # noqa: E402
from arroyo_core.transports.amqp.topology import Target  # noqa: E402


def documented_body() -> bytes:
    """The AMQP body dumped in docs/protocol.md, section 11, read out of the document."""
    section = PROTOCOL.read_text().split("## 11. Carrying the frames over AMQP", 1)[1]
    dump = section.split("```text\n", 1)[1].split("```", 1)[0]
    return bytes.fromhex("".join(line[6:55] for line in dump.splitlines()))


def test_the_documented_vector_is_what_both_packers_write():
    vector = documented_body()
    assert len(vector) == 48
    frames = [b"head", b"abcdefghij"]
    assert pack_bytes(frames) == vector == bytes(pack_frames(frames))
    assert [bytes(f) for f in unpack_frames(vector)] == frames


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=8))
def test_pack_bytes_matches_pack_frames(frames):
    assert pack_bytes(frames) == bytes(pack_frames(frames))


@pytest.mark.parametrize("query, target, key", [
    ({"queue": "q"}, ("", "q"), "#"),  # (no exchange: nothing is bound)
    ({"exchange": "e"}, ("e", ""), "#"),
    ({"exchange": "e", "routing_key": "det.a", "queue": "w"}, ("e", "det.a"), "det.a"),
    ({"exchange": "e", "exchange_type": "fanout"}, ("e", ""), ""),
])
def test_a_target_says_where_a_sender_publishes_and_what_a_receiver_binds(query, target, key):
    options = {**query, "prefetch": 5}
    parsed = Target.take(options)
    assert options == {"prefetch": 5}  # the rest is the sender's or receiver's
    assert parsed.publish_to == target and parsed.binding_key == key


@pytest.mark.parametrize("query, says", [
    ({}, "names ?queue=NAME"),
    ({"exchange": "e", "exchange_type": "round-robin"}, "is not one of"),
    ({"queue": "q", "durable": "maybe"}, "expected true or false"),
])
def test_a_target_that_names_nothing_valid_is_a_config_error(query, says):
    with pytest.raises(ConfigError, match=says.replace("?", "\\?")):
        Target.take(dict(query))


def test_durable_reads_as_a_flag_from_a_query():
    assert Target.take({"queue": "q", "durable": "true"}).durable is True
    assert Target.take({"queue": "q", "durable": "0"}).durable is False


def test_names_and_urls_hide_the_password():
    url = "amqp://user:p%40ss@broker:5672/vhost"
    assert redact(url) == "amqp://user:***@broker:5672/vhost"
    address = Address.parse(f"{url}?queue=frames", bind_by_default=False)
    name = AmqpTransport().name(address, dict(address.query))
    assert name == "queue 'frames' at amqp://user:***@broker:5672/vhost"


def test_senders_send_no_heartbeats_unless_told_and_receivers_do():
    # (a sender is idle between runs, when pika's blocking connection answers nothing)
    url = "amqp://u:p@127.0.0.1:1/%2F"
    address = Address.parse(f"{url}?queue=q", bind_by_default=False)
    transport = AmqpTransport()
    sender = transport.sender(address, dict(address.query), "out")
    receiver = transport.receiver(address, {**address.query, "max_message_bytes": 2**20}, "in")
    assert sender.connection.params.heartbeat == 0
    assert receiver.connection.params.heartbeat == 30
    told = transport.sender(address, {**address.query, "heartbeat": "5"}, "out")
    assert told.connection.params.heartbeat == 5


def test_tls_options_need_an_amqps_address():
    with pytest.raises(ConfigError, match="need an amqps://"):
        ClientSettings(ssl_ca_certs="/etc/ssl/ca.pem").parameters("amqp://h/%2F")


class RecordingChannel:
    """Records the acknowledgements a receiver sends (its only use of the channel here)."""

    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.acks.append((tag, multiple))


def test_acknowledgements_go_out_up_to_the_first_message_not_yet_handled():
    receiver = AmqpReceiver("amqp://u:p@127.0.0.1:1/%2F", ClientSettings(), "input",
                            Target(queue="q"))
    channel = RecordingChannel()
    receiver.acknowledge([(1, 2), (1, 3)])  # a duplicate and a malformed one, say
    receiver._flush(channel, 1)
    assert channel.acks == []  # tag 1 is still being handled: nothing may go yet
    receiver.acknowledge([(1, 1), (1, 5)])
    receiver._flush(channel, 1)
    assert channel.acks == [(3, True)] and receiver.acked == 3
    receiver.acknowledge([(0, 4)])  # from a channel since lost: the broker requeued it
    receiver._flush(channel, 1)
    assert channel.acks == [(3, True)]
    receiver.acknowledge([(1, 4)])
    receiver._flush(channel, 1)
    assert channel.acks == [(3, True), (5, True)] and receiver.acked == 5


def test_a_shared_ledger_counts_no_gap_and_takes_an_unseen_earlier_number_as_new():
    ledger = InputLedger("input", shared=True)
    assert [ledger.observe("s", seq) for seq in (0, 2, 5, 9)] == [True] * 4
    # 3 went to another receiver that died with it: delivered here later, it is new
    assert ledger.observe("s", 3) is True
    assert ledger.observe("s", 5) is False  # seen here: a duplicate
    status = ledger.status()
    assert (status.received, status.missing, status.duplicates) == (5, 0, 1)
    assert status.senders["s"].next_seq == 10
    alone = InputLedger("input")
    assert [alone.observe("s", seq) for seq in (0, 2, 5, 9, 3)] == [True] * 4 + [False]
    assert alone.status().missing == 6


def test_a_receiver_says_whether_it_shares_the_queue():
    url = "amqp://u:p@127.0.0.1:1/%2F"
    address = Address.parse(f"{url}?queue=q&shared=true", bind_by_default=False)
    receiver = AmqpTransport().receiver(address, {**address.query, "max_message_bytes": 1}, "in")
    assert receiver.shares_sequence is True
    alone = AmqpTransport().receiver(address, {"queue": "q", "max_message_bytes": 1}, "in")
    assert alone.shares_sequence is False


@pytest.mark.parametrize("text", [
    "amqp://guest:s3cret:with%40odd/chars@127.0.0.1:5672/%2F?queue=q",  # ':' not quoted
    "redis://:s3cret@host:port/0",
    "amqp://guest:s3cret@host:5672/%2F?queue=a b",
])
def test_an_address_that_does_not_parse_shows_no_password(text):
    with pytest.raises(ConfigError) as caught:
        Address.parse(text, bind_by_default=False)
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)
