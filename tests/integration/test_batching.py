"""Batches of small Events between real services (docs/protocol.md section 9).

What the chain delivered is counted by a receiver written from the protocol document
(tests.support.kills.RawReceiver: raw pyzmq and msgpack, no Arroyo code), and checked
against the ledgers and the status records of the services.
"""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import zmq

from arroyo_core import Event, Start, Stop, encode
from arroyo_core.batch import EventBatch
from tests.support.kills import RawReceiver
from tests.support.ledgers import final_ledger, status
from tests.support.waiting import exit_within, wait_for

pytestmark = pytest.mark.integration

FRAMES = 20_000


def source_args(frames: int, rate: float) -> list[str]:
    return ["--source", "simulated", "-o", "shape=[16,32]", "-o", f"frames={frames}",
            "-o", f"rate={rate}"]


def chain(service, ipc, frames: int, rate: float, *out_options: str):
    """source -> operator -> forwarder (`--sink zmq`) -> RawReceiver; status endpoints."""
    hop1, hop2, out = ipc(), ipc(), ipc()
    receiver = RawReceiver(out)
    receiver.start()
    endpoints = {name: ipc() for name in ("operator", "forwarder")}
    service("publisher", "--in", ">" + hop2, "--sink", "zmq", "-o", f"address=@{out}",
            "--status", endpoints["forwarder"], name="forwarder")
    service("operator", "--in", ">" + hop1, "--out", "@" + hop2, *out_options,
            "--status", endpoints["operator"], name="operator")
    source = service("listener", *source_args(frames, rate), "--out", "@" + hop1, *out_options,
                     name="source")
    return receiver, endpoints, source


def outputs(endpoints, source) -> dict:
    """The one output record of the source (from its last log line: it has ended) and of
    the operator."""
    assert exit_within(source, 30) == 0
    return {"source": final_ledger(source)["outputs"][0],
            "operator": status(endpoints["operator"])["outputs"][0]}


def test_small_events_travel_in_batches_and_each_is_counted(service, ipc):
    receiver, endpoints, source = chain(service, ipc, FRAMES, 0)
    try:
        wait_for(lambda: receiver.frames_sent, 60, "the run's Stop at the receiver")
    finally:
        receiver.stop()
    # the truth, from the receiver: every frame once, in order
    (run, sent), = receiver.frames_sent.items()
    assert sent == FRAMES
    assert [frame for _, frame in receiver.frames] == list(range(FRAMES))

    for name, output in outputs(endpoints, source).items():
        assert output["batches"] > 0, f"{name} at full speed sent no batch"
        assert output["batched"] > FRAMES / 2, (name, output)  # most went in batches
        assert output["sent"] == FRAMES + 2 and not output["dropped"], (name, output)
    operator = status(endpoints["operator"])
    ledger = operator["input"]
    assert (ledger["received"], ledger["missing"], ledger["duplicates"]) == (FRAMES + 2, 0, 0)
    (run_ledger,) = ledger["run_ledger"]
    assert run_ledger["seen"] == FRAMES and run_ledger["missing"] == 0
    forwarder = status(endpoints["forwarder"])
    assert forwarder["input"]["received"] == FRAMES + 2
    assert forwarder["outputs"][0]["sent"] == FRAMES + 2


def test_a_slow_stream_is_not_held_back(service, ipc):
    """At 50 events/s the runtime has nothing queued after each Event, so each goes
    alone, at once, as a plain Event; only a backlog batches (at the start, the Events
    queued while the Start waits for the operator to connect)."""
    receiver, endpoints, source = chain(service, ipc, 100, 50)
    try:
        wait_for(lambda: receiver.frames_sent, 30, "the run's Stop at the receiver")
    finally:
        receiver.stop()
    assert [frame for _, frame in receiver.frames] == list(range(100))
    for name, output in outputs(endpoints, source).items():
        assert output["sent"] == 102 and output["batched"] < 50, (name, output)


def test_batch_zero_sends_every_event_alone(service, ipc):
    receiver, endpoints, source = chain(service, ipc, 2000, 0, "--out-option", "batch=0")
    try:
        wait_for(lambda: receiver.frames_sent, 30, "the run's Stop at the receiver")
    finally:
        receiver.stop()
    assert len(receiver.frames) == 2000
    for name, output in outputs(endpoints, source).items():
        assert output["batches"] == output["batched"] == 0 and output["sent"] == 2002, \
            (name, output)


def test_a_malformed_batch_is_counted_by_reason_and_the_stream_goes_on(
        service, ipc, zmq_socket):
    """Through a real socket into a real sink: a batch whose data frame is cut short is
    rejected whole (reason ``length``), its Events show as missing, and the batches
    around it are delivered."""
    hop, sink_status = ipc(), ipc()
    push = zmq_socket(zmq.PUSH)
    push.bind(hop)
    service("publisher", "--in", ">" + hop, "--sink", "stats", "--status", sink_status,
            name="sink")

    def batch(first: int, count: int) -> list[bytes]:
        events = EventBatch()
        for frame in range(first, first + count):
            events.add(Event({"run": "r", "frame": frame},
                             {"image": np.full(8, frame, np.uint16)}))
        return [bytes(f) for f in events.frames(src="feed", seq=first + 1)]

    push.send_multipart([bytes(f) for f in encode(Start({"run": "r"}), src="feed", seq=0)])
    push.send_multipart(batch(0, 5))
    header, data = batch(5, 5)
    push.send_multipart([header, data[:-16]])  # two arrays short
    push.send_multipart(batch(10, 5))
    push.send_multipart([bytes(f) for f in encode(
        Stop({"run": "r", "frames_sent": 15}), src="feed", seq=16)])

    record = wait_for(lambda: (lambda r: r if r["outputs"][0]["runs"] and
                               r["outputs"][0]["runs"][-1]["complete"] else None)(
                                   status(sink_status)), 20, "the run's summary")
    ledger = record["input"]
    assert ledger["malformed"] == {"length": 1}
    assert ledger["missing"] == 5 and ledger["received"] == 12, ledger
    (run,) = record["outputs"][0]["runs"]
    assert run["frames"] == 10 and run["lost"] == 5, run
    # the header of the rejected batch really was a batch of five (the test's own check)
    assert len(msgpack.unpackb(header)["events"]) == 5
