"""AMQP links in this process against a real rabbitmq-server (one per session, private node,
ports and files: tests.support.rabbitmq_server). Each test uses queues of its own.

The broker's password needs quoting in a URL, the links use the vhost ``arroyo``, and the
broker's ``max_message_size`` is 8 MiB. The oracles read the broker with a pika client of
their own (queue depths, raw message bodies), not through Arroyo's links.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import numpy as np
import pytest

from arroyo_core.errors import ConfigError
from arroyo_core.link import InputLink, OutputLink
from arroyo_core.message import Event, Message, Start, Stop
from arroyo_core.packed import unpack_frames
from arroyo_core.wire import encode
from services.processes import free_port
from tests.support.in_process import HoldingOperator
from tests.support.messages import assert_all_same
from tests.support.waiting import wait_for

pika = pytest.importorskip("pika")
trustme = pytest.importorskip("trustme")
from tests.support.rabbitmq_server import MAX_MESSAGE_SIZE, PASSWORD  # noqa: E402

pytestmark = pytest.mark.integration



@pytest.fixture
def outputs() -> Iterator[Callable[..., OutputLink]]:
    made: list[OutputLink] = []

    def make(address: str, **options: Any) -> OutputLink:
        made.append(OutputLink(address, **options))
        made[-1].open()
        return made[-1]

    yield make
    for link in made:
        link.abandon()
        link.close()


def messages() -> list[Message]:
    rng = np.random.default_rng(7)
    return [
        Start({"run": "r1", "nested": {"shape": [3, 4], "ok": True}, "none": None}),
        Event({"frame": 0}, {
            "u16": rng.integers(0, 2**16, (3, 4), dtype=np.uint16),
            "f64be": rng.random((2, 2)).astype(">f8"),
            "c64": (rng.random(3) + 1j).astype(np.complex64),
            "text": np.array(["ab", "cde"], dtype="S3"),
            "empty": np.zeros((0, 4), dtype=np.float32),
            "scalar": np.array(42, dtype=np.int32),
            "raw": b"\x00raw bytes\xff",
        }),
        Event({"frame": 1}, {}),
        Event({"frame": 2}, {"big": rng.integers(0, 2**16, 2**20, dtype=np.uint16)}),
        Stop({"run": "r1", "frames_sent": 3}),
    ]


def raw_bodies(rabbitmq: Any, queue: str) -> list[bytes]:
    """Every message body in ``queue``, read (and acknowledged) by a pika client of our own."""
    connection = rabbitmq.connection()
    try:
        channel = connection.channel()
        bodies = []
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return bodies
            bodies.append(body)
    finally:
        connection.close()


def test_a_queue_carries_every_message_kind_bit_identical_in_the_documented_bytes(
        rabbitmq, outputs, runtimes):
    url, sent = rabbitmq.url(), messages()
    publisher = outputs(f"{url}?queue=kinds-raw")
    for message in sent:
        publisher.publish(message)
    # On the broker: one message per Arroyo message, its body the packed frames that
    # wire.encode makes for ZeroMQ (docs/protocol.md section 11), byte for byte.
    bodies = raw_bodies(rabbitmq, "kinds-raw")
    assert len(bodies) == len(sent)
    for seq, (body, message) in enumerate(zip(bodies, sent, strict=True)):
        frames = [bytes(memoryview(f)) for f in encode(message, src=publisher.src, seq=seq)]
        carried = [bytes(f) for f in unpack_frames(body)]
        assert carried[1:] == frames[1:]  # the arrays' bytes
        header, expected = msgpack.unpackb(carried[0]), msgpack.unpackb(frames[0])
        assert header.pop("time") > 0 and expected.pop("time") > 0  # (the time it was sent)
        assert header == expected

    for message in sent:
        publisher.publish(message)
    listener = InputLink(f"{url}?queue=kinds-raw")
    running = runtimes(listener)
    assert_all_same(sent, running.wait_for(len(sent)))
    wait_for(lambda: listener.stats()["amqp"]["acked"] == len(sent), 5, "acknowledgements")
    assert rabbitmq.queue("kinds-raw").message_count == 0
    assert publisher.stats()["sent"] == 2 * len(sent) and publisher.stats()["dropped"] == {}


def test_messages_are_acknowledged_only_once_handled_and_unhandled_ones_are_redelivered(
        rabbitmq, outputs, runtimes):
    publisher = outputs(f"{rabbitmq.url()}?queue=held")
    for frame in range(20):
        publisher.publish(Event({"frame": frame}, {"x": np.full(4, frame)}))
    listener = InputLink(f"{rabbitmq.url()}?queue=held", poll_ms=20)
    operator = HoldingOperator(hold=5)
    running = runtimes(listener, operator)
    assert operator.reached.wait(10)
    # Frames 0-4 are handled and acknowledged; 5 is in the operator, 6-19 were delivered
    # (prefetched, queued) but not handled: the broker still holds those 15 unacknowledged.
    wait_for(lambda: listener.stats()["amqp"]["acked"] == 5, 5, "5 acknowledgements")
    assert listener.stats()["amqp"]["acked"] == 5 and listener.stats()["unhandled"] >= 1
    operator.release.set()
    wait_for(lambda: listener.stats()["amqp"]["acked"] == 20, 5, "20 acknowledgements")
    assert [m.meta["frame"] for m in running.messages] == list(range(20))
    assert rabbitmq.queue("held").message_count == 0

    # A receiver that closes with messages delivered but not handled leaves them queued:
    # the link alone, delivering to a list, and told that the first 3 were handled.
    running.stop()
    for frame in range(20, 30):
        publisher.publish(Event({"frame": frame}, {}))
    link = InputLink(f"{rabbitmq.url()}?queue=held", poll_ms=20)
    link.open()
    delivered: list[Message] = []
    thread = threading.Thread(target=link.start, args=(delivered.append,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(delivered) == 10, 10, "10 deliveries")
        for message in delivered[:3]:
            link.handled(message)
        wait_for(lambda: link.stats()["amqp"]["acked"] == 3, 5, "3 acknowledgements")
    finally:
        link.stop()
        thread.join(10)
        link.close()
    wait_for(lambda: rabbitmq.queue("held").message_count == 7, 5, "7 messages back")
    assert [m.meta["frame"] for m in delivered] == list(range(20, 30))


def test_an_exchange_reaches_every_receiver_and_a_named_queue_is_shared(
        rabbitmq, outputs, runtimes):
    url = rabbitmq.url()
    own = [InputLink(f"{url}?exchange=frames&routing_key=det.%23") for _ in range(2)]
    shared = [InputLink(f"{url}?exchange=frames&routing_key=det.%23&queue=workers",
                        prefetch=1) for _ in range(2)]
    running = [runtimes(link) for link in own + shared]
    wait_for(lambda: all(link.stats()["amqp"]["connected"] for link in own + shared), 10,
             "the receivers to bind their queues")
    wait_for(lambda: rabbitmq.queue("workers").consumer_count == 2, 10, "two workers")
    publisher = outputs(f"{url}?exchange=frames&routing_key=det.a")
    other = outputs(f"{url}?exchange=frames&routing_key=elsewhere")
    for frame in range(40):
        publisher.publish(Event({"frame": frame}, {}))
    assert other.sender.send(encode(Start(), src="x", seq=0), True) == "unroutable"
    for each in running[:2]:
        assert [m.meta["frame"] for m in each.wait_for(40)] == list(range(40))
    wait_for(lambda: sum(len(r.messages) for r in running[2:]) == 40, 10, "the workers' share")
    frames = sorted(m.meta["frame"] for r in running[2:] for m in r.messages)
    assert frames == list(range(40))
    assert all(r.messages for r in running[2:]), "one worker got no share"
    assert own[0].stats()["amqp"]["queue"] != own[1].stats()["amqp"]["queue"]


def test_message_size_limits_are_enforced_with_a_clear_error(rabbitmq, outputs, runtimes, caplog):
    url = rabbitmq.url()
    big = Event({"frame": 0}, {"x": np.zeros(MAX_MESSAGE_SIZE // 8 + 1, dtype=np.uint64)})
    # The link's own limit (RabbitMQ's default 128 MiB unless told): refused before sending.
    careful = outputs(f"{url}?queue=sizes", max_message_size="4MiB")
    careful.publish(big)
    assert careful.stats()["dropped"] == {"larger than max_message_size (4194304 bytes)": 1}
    assert "larger than the broker's max_message_size, 4194304 bytes" in caplog.text
    # A broker with a lower limit than the link was told: its refusal, counted by reason;
    # the link goes on with a new channel.
    trusting = outputs(f"{url}?queue=sizes")
    trusting.publish(big)
    trusting.publish(Event({"frame": 1}, {}))
    reason = "refused by the broker (406 PRECONDITION_FAILED)"
    assert trusting.stats()["dropped"] == {reason: 1}
    assert trusting.stats()["sent"] == 1 and "larger than configured max size" in caplog.text
    # A receiver's max_message_bytes: the link rejects it as malformed (size), and acks it.
    fine = outputs(f"{url}?queue=sizes")
    fine.publish(Event({"frame": 2}, {"x": np.zeros(2**18, dtype=np.uint8)}))
    listener = InputLink(f"{url}?queue=sizes", max_message_bytes=2**17)
    running = runtimes(listener)
    assert [m.meta["frame"] for m in running.wait_for(1)] == [1]
    wait_for(lambda: listener.stats()["malformed"] == {"size": 1}, 5, "the size rejection")
    wait_for(lambda: rabbitmq.queue("sizes").message_count == 0, 5, "an empty queue")


def test_prefetch_shrinks_to_the_links_memory_budget(rabbitmq, outputs, runtimes):
    url = rabbitmq.url()
    publisher = outputs(f"{url}?queue=budget")
    for frame in range(6):
        publisher.publish(Event({"frame": frame}, {"x": np.zeros(2**20, dtype=np.uint8)}))
    # Before a message came: what 4 MiB hold of the largest message the link accepts (1).
    listener = InputLink(f"{url}?queue=budget", max_bytes="4MiB",
                         max_message_bytes=8 * 2**20)
    assert listener.stats()["amqp"]["prefetch"] == 1
    operator = HoldingOperator(hold=0)  # nothing is handled, so nothing acknowledged
    running = runtimes(listener, operator)
    assert operator.reached.wait(10)
    # The broker's side: 3 delivered and unacknowledged (4 MiB of 1 MiB + header messages),
    # 3 still ready in the queue.
    wait_for(lambda: rabbitmq.queue("budget").message_count == 3, 10, "3 messages held back")
    assert listener.stats()["amqp"]["prefetch"] == 3
    wait_for(lambda: listener.stats()["amqp"]["consumed"] == 3, 5, "3 messages taken in")
    operator.release.set()
    running.wait_for(6)
    small = InputLink(f"{url}?queue=budget-small", max_bytes="4MiB", max_message_bytes=2**20)
    assert small.stats()["amqp"]["prefetch"] == 4
    publisher = outputs(f"{url}?queue=budget-small")
    for frame in range(3):
        publisher.publish(Event({"frame": frame}, {"x": np.zeros(1000, dtype=np.uint8)}))
    runtimes(small).wait_for(3)
    assert small.stats()["amqp"]["prefetch"] == 256  # small messages: the most it takes


def test_credentials_vhost_and_declarations_refused_at_open_are_config_errors(rabbitmq):
    good = OutputLink(f"{rabbitmq.url()}?queue=creds")
    good.open()
    stats = str(good.stats())
    assert PASSWORD not in stats and "arroyo:***@" in good.stats()["link"]
    good.close()
    for url, says in ((rabbitmq.url(password="wrong"), "refused"),
                      (rabbitmq.url(vhost="nowhere"), "refused")):
        link = InputLink(f"{url}?queue=creds")
        with pytest.raises(ConfigError, match=says) as caught:
            link.open()
        assert "wrong" not in str(caught.value) or "***" in str(caught.value)
        link.close()
    # The queue exists as transient; asking for it durable is a clear refusal.
    durable = InputLink(f"{rabbitmq.url()}?queue=creds&durable=true")
    with pytest.raises(ConfigError, match="PRECONDITION_FAILED.*durable"):
        durable.open()
    durable.close()
    with pytest.raises(ConfigError, match="names \\?queue=NAME"):
        OutputLink(f"{rabbitmq.url()}")
    with pytest.raises(ConfigError, match="option prefetch: expected an integer"):
        InputLink(f"{rabbitmq.url()}?queue=q&prefetch=lots")


def test_amqps_carries_messages_over_tls_and_an_untrusted_broker_is_a_config_error(
        rabbitmq, outputs, runtimes, tmp_path):
    # The broker's TLS listener presents a certificate from the test's own CA: trusted
    # through ssl_ca_certs, every message arrives as sent, acknowledged.
    url, sent = rabbitmq.url(tls=True), messages()
    trust = {"ssl_ca_certs": str(rabbitmq.ca_file)}
    publisher = outputs(f"{url}?queue=tls", **trust)
    for message in sent:
        publisher.publish(message)
    listener = InputLink(f"{url}?queue=tls", **trust)
    running = runtimes(listener)
    assert_all_same(sent, running.wait_for(len(sent)))
    wait_for(lambda: listener.stats()["amqp"]["acked"] == len(sent), 5, "acknowledgements")
    assert listener.stats()["amqp"]["url"].startswith("amqps://arroyo:***@")
    # A certificate no given CA vouches for (the system's CAs by default) is refused at
    # open, naming the option, rather than retried as an outage for ever.
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    for options in ({"ssl_ca_certs": str(other)}, {}):
        link = InputLink(f"{url}?queue=tls", **options)
        with pytest.raises(ConfigError, match="TLS certificate is not trusted.*ssl_ca_certs"):
            link.open()
        link.close()
    # TLS options on a plain address are a mistake, said at once.
    with pytest.raises(ConfigError, match="ssl_ca_certs need an amqps://"):
        OutputLink(f"{rabbitmq.url()}?queue=tls", **trust)


def test_a_sender_without_a_broker_counts_drops_and_a_start_waits_until_abandoned():
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"  # nothing listens there
    publisher = OutputLink(f"{url}?queue=q", outage="drop", max_backoff=0.2)
    publisher.open()  # no exception: it will keep trying
    for frame in range(3):
        publisher.publish(Event({"frame": frame}, {}))
    assert publisher.stats()["dropped"] == {"broker unavailable": 3}
    assert publisher.stats()["amqp"]["outages"] == 1
    starting = threading.Thread(target=publisher.publish, args=(Start(),), daemon=True)
    starting.start()
    starting.join(0.5)  # (bounded: it must still be waiting, not be done)
    assert starting.is_alive()
    publisher.abandon()
    starting.join(5)
    assert not starting.is_alive()
    stats = publisher.stats()
    assert stats["dropped"] == {"broker unavailable": 3, "broker unavailable until shutdown": 1}
    assert stats["amqp"]["outages"] == 1 and stats["amqp"]["failed_attempts"] >= 2
    publisher.close()


def test_batches_of_small_events_travel_as_one_message_each(rabbitmq, outputs, runtimes):
    url = rabbitmq.url()
    publisher = outputs(f"{url}?queue=batches", batch=64)
    publisher.allow_batching()  # (as the runtime does; it flushes when it has nothing queued)
    for frame in range(100):
        publisher.publish(Event({"frame": frame}, {"x": np.full(8, frame, dtype=np.uint16)}))
    publisher.flush()
    assert publisher.stats()["batches"] == 2 and publisher.stats()["sent"] == 100
    assert rabbitmq.queue("batches").message_count == 2  # one AMQP message per batch
    listener = InputLink(f"{url}?queue=batches")
    running = runtimes(listener)
    assert [m.meta["frame"] for m in running.wait_for(100)] == list(range(100))
    assert all(int(m.payload["x"][0]) == m.meta["frame"] for m in running.messages)
    wait_for(lambda: listener.stats()["amqp"]["acked"] == 2, 5, "both batches acknowledged")
    assert listener.stats()["received"] == 100 and listener.stats()["missing"] == 0
