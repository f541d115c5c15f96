"""AMQP addresses between real ``arroyo`` service processes, through a real rabbitmq-server
(one per session: tests.support.rabbitmq_server).

The oracles share no code with Arroyo's ledgers: the frame numbers the last hop received
(a raw PULL socket, tests.support.chain_ends.FrameSink), and what the broker itself holds
(read with a pika client of the test's own). The services' ledgers must then report
exactly that loss.
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest

from arroyo_core.packed import unpack_frames
from arroyo_core.wire import decode
from services.status_server import query_status
from tests.support.chain_ends import FrameSink
from tests.support.ledgers import final_ledger
from tests.support.waiting import exit_within, wait_for

pika = pytest.importorskip("pika")
from tests.support.rabbitmq_server import PASSWORD  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FRAMES = 500


def simulated_source(address: str, frames: int = FRAMES, rate: int = 2000) -> list[str]:
    return ["--source", "simulated", "-o", f"frames={frames}", "-o", f"rate={rate}",
            "-o", "shape=[16,16]", "--out", address]


def assert_no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text


def queued_frames(rabbitmq: Any, queue: str) -> set[int]:
    """The frame numbers of the Events ``queue`` holds now, read without taking them (the
    messages go back to the queue when this connection closes)."""
    connection = rabbitmq.connection()
    frames: set[int] = set()
    try:
        channel = connection.channel()
        for _ in range(100_000):
            method, _, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            message, _ = decode(unpack_frames(body))
            if message.kind == "event":
                frames.add(message.meta["frame"])
    finally:
        connection.close()
    return frames


def _confirmed(status: str, messages: int) -> dict[str, Any] | None:
    ledger = query_status(status)["outputs"][0]
    return ledger if ledger["sent"] == messages else None


def test_a_source_and_an_operator_linked_by_a_durable_queue_with_exact_ledgers(
        rabbitmq, service, ipc, zmq_socket):
    address = f"{rabbitmq.url()}?queue=chain&durable=true"
    to_sink, operator_status = ipc(), ipc()
    sink = FrameSink(zmq_socket, ">" + to_sink, [])
    start = sink.starter(service)
    operator = start("operator", "--in", address, "--out", "@" + to_sink,
                     "--stats", operator_status, name="operator")
    source = start("listener", *simulated_source(address), name="source")

    sink.pump(lambda: sink.stop_meta is not None, 30, "the run's Stop at the sink")
    assert sink.stop_meta is not None and sink.stop_meta["frames_sent"] == FRAMES
    assert sink.frames == Counter(range(FRAMES))
    assert sink.kinds == Counter({"start": 1, "event": FRAMES, "stop": 1})

    assert exit_within(source, 20) == 0
    sent = final_ledger(source)["outputs"][0]
    assert sent["sent"] == FRAMES + 2 and sent["dropped"] == {}
    assert sent["amqp"]["outages"] == 0 and sent["amqp"]["confirm"] is True
    wait_for(lambda: query_status(operator_status)["input"]["amqp"]["acked"] == FRAMES + 2,
             5, "every message to be acknowledged")
    assert rabbitmq.queue("chain", durable=True).message_count == 0
    ledger = query_status(operator_status)
    received = ledger["input"]
    assert received["received"] == FRAMES + 2 and received["unhandled"] == 0
    assert (received["missing"], received["duplicates"], received["malformed"]) == (0, 0, {})
    assert received["link"].startswith("input queue 'chain' at amqp://arroyo:***@127.0.0.1:")
    assert ledger["outputs"][0]["sent"] == FRAMES + 2
    assert_no_password(str(ledger), operator.output(), source.output())


def test_competing_consumers_share_a_work_queue_and_survive_the_kill_of_one(
        rabbitmq, service, feeder, ipc, zmq_socket):
    frames, queue = 1500, f"{rabbitmq.url()}?queue=compete"
    to_bridge, to_sink = ipc(), ipc()
    sink = FrameSink(zmq_socket, to_sink, [])
    start = sink.starter(service)
    statuses = [ipc(), ipc()]
    # (without shared=true the survivor drops as duplicates the 8 or so the other died with)
    workers = [start("operator", "--in", f"{queue}&shared=true&prefetch=8", "--out",
                     ">" + to_sink, "--stats", status, name=f"worker{index}")
               for index, status in enumerate(statuses)]
    wait_for(lambda: rabbitmq.queue("compete").consumer_count == 2, 10, "two consumers")
    start("operator", "--in", ">" + to_bridge, "--out", queue, name="bridge")
    feeder(to_bridge, frames, rate=1000)

    sink.pump(lambda: sum(sink.frames.values()) >= 300, 20, "300 frames before the kill")
    shares = [query_status(status)["input"]["received"] for status in statuses]
    assert min(shares) > 0, f"one worker got no share: {shares}"
    # What the killed worker held unacknowledged goes to the other, whose ledger is past
    # most of those numbers: it must take them as new, not as duplicates.
    workers[0].signal(signal.SIGKILL)
    workers[0].process.wait(5)
    sink.pump(lambda: sink.stop_meta is not None and sum(sink.frames.values()) >= frames, 30,
              "every frame and the Stop at the sink")
    missing = [f for f in range(frames) if sink.frames[f] == 0]
    assert not missing, f"frames never processed: {missing[:20]}"
    assert sink.kinds["start"] == 1 and sink.kinds["stop"] == 1
    twice = sum(sink.frames.values()) - frames  # handled by the killed one, not acknowledged
    assert twice <= 8 + 64, twice  # its prefetch window and its queue
    survivor = query_status(statuses[1])["input"]
    assert survivor["missing"] == 0 and survivor["malformed"] == {}
    print(f"shares before the kill: {shares}; delivered twice: {twice}; taken over by the "
          f"survivor: {survivor['amqp']['redelivered']}")


def test_kill_9_of_a_consuming_service_loses_no_acknowledged_message(
        rabbitmq, service, feeder, ipc, zmq_socket):
    frames, queue = 1500, "killed"
    address = f"{rabbitmq.url()}?queue={queue}&durable=true"
    to_bridge, to_sink = ipc(), ipc()
    sink = FrameSink(zmq_socket, to_sink, [])
    start = sink.starter(service)
    consumer = ["operator", "--in", address, "--in-option", "prefetch=32", "--in-option",
                "max_backoff=0.5", "--out", ">" + to_sink]
    first = start(*consumer, name="consumer")
    start("operator", "--in", ">" + to_bridge, "--out", address, name="bridge")
    feeder(to_bridge, frames, rate=1000)

    sink.pump(lambda: sum(sink.frames.values()) >= 300, 20, "300 frames before the kill")
    first.signal(signal.SIGKILL)
    first.process.wait(5)
    wait_for(lambda: rabbitmq.queue(queue, durable=True).consumer_count == 0, 5,
             "the broker to see the consumer gone")
    # What the broker still holds (never delivered, or delivered and not acknowledged,
    # put back at the kill); every frame up to the newest held was published before this
    # look, so those not held were acknowledged.
    held = queued_frames(rabbitmq, queue)
    assert held, "the kill did not land mid-run"
    acknowledged = set(range(max(held))) - held
    assert len(acknowledged) >= 250

    start(*consumer, name="consumer-2")
    sink.pump(lambda: sink.stop_meta is not None, 30, "the run's Stop after the restart")
    assert sink.stop_meta["frames_sent"] == frames
    missing = [f for f in range(frames) if sink.frames[f] == 0]
    twice = sorted(f for f in acknowledged if sink.frames[f] != 1)
    assert not missing, f"frames never processed: {missing[:20]}"
    assert not twice, f"acknowledged before the kill, processed other than once: {twice[:20]}"
    assert sink.kinds["start"] == 1
    duplicates = sum(sink.frames.values()) - frames  # unacknowledged at the kill: again
    assert duplicates <= 32 + 64, duplicates  # at most the prefetch window and the queue
    print(f"acknowledged before the kill: {len(acknowledged)} frames; delivered twice: "
          f"{duplicates}")


def test_a_broker_restart_mid_run_is_survived_and_loss_is_reported_exactly(
        rabbitmq, service, feeder, ipc, zmq_socket):
    """Two chains through the same restart: a durable queue with confirms loses nothing;
    a transient one loses what it held, and its consumer's ledger counts exactly that."""
    frames = 2400  # 4 s at 600 a second: the restart lands mid-run
    chains: dict[str, dict[str, Any]] = {}
    for kind, query in (("durable", "durable=true"), ("transient", "durable=false")):
        address = f"{rabbitmq.url()}?queue=restart-{kind}&{query}"
        to_bridge, to_sink = ipc(), ipc()
        bridge_status, consumer_status = ipc(), ipc()
        sink = FrameSink(zmq_socket, to_sink, [])
        start = sink.starter(service)
        consumer = start("operator", "--in", address, "--in-option", "max_backoff=0.3",
                         "--out", ">" + to_sink, "--stats", consumer_status,
                         name=f"{kind}-consumer")
        start("operator", "--in", ">" + to_bridge, "--out", address, "--out-option",
              "max_backoff=0.3", "--stats", bridge_status, name=f"{kind}-bridge")
        feeder(to_bridge, frames, rate=600)
        chains[kind] = {"sink": sink, "consumer": consumer, "bridge": bridge_status,
                        "status": consumer_status}
    durable, transient = chains["durable"], chains["transient"]

    durable["sink"].pump(lambda: sum(durable["sink"].frames.values()) >= 200, 20,
                         "200 frames before the restart")
    transient["sink"].pump(lambda: transient["sink"].kinds["start"] == 1, 20, "a Start")
    # The transient consumer pauses, so that its queue holds messages when the broker stops.
    transient["consumer"].signal(signal.SIGSTOP)
    wait_for(lambda: rabbitmq.queue("restart-transient").message_count >= 100, 10,
             "messages to wait in the transient queue")
    rabbitmq.restart()
    transient["consumer"].signal(signal.SIGCONT)

    for kind, chain in chains.items():
        sink = chain["sink"]
        sink.pump(lambda sink=sink: sink.stop_meta is not None, 60, f"the {kind} run's Stop")
        assert sink.stop_meta["frames_sent"] == frames
        # every one confirmed by the broker (the Stop's confirmation may come after it
        # reached the sink)
        bridge = wait_for(lambda chain=chain: _confirmed(chain["bridge"], frames + 2), 10,
                          f"the {kind} bridge's last confirmation")
        assert bridge["amqp"]["outages"] >= 1 and bridge["dropped"] == {}, kind
        reader = query_status(chain["status"])["input"]
        assert reader["amqp"]["outages"] >= 1 and reader["malformed"] == {}, kind
        lost = [f for f in range(frames) if sink.frames[f] == 0]
        assert all(count == 1 for count in sink.frames.values()), f"{kind}: a frame twice"
        assert reader["missing"] == len(lost), (kind, reader["missing"], len(lost))
        chain["lost"] = len(lost)
        print(f"{kind}: lost {len(lost)} of {frames} frames; duplicates dropped by the "
              f"consumer's ledger: {reader['duplicates']}")
    assert durable["lost"] == 0
    assert transient["lost"] > 0, "the transient queue lost nothing: the test tested nothing"
