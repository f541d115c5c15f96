"""Typed status records: the runtime makes them from its parts, their dict form survives
msgpack and JSON, and ``from_dict`` reads back exactly what ``to_dict`` wrote."""

from __future__ import annotations

import json

import msgpack
import numpy as np

from arroyo_core import (
    CollectingSink,
    Event,
    InputLink,
    MemoryListener,
    OutputLink,
    PassThrough,
    Publisher,
    Runtime,
    Start,
    Stop,
)
from arroyo_core.address import Address
from arroyo_core.status import (
    LagStatus,
    LinkStatus,
    OperatorStatus,
    QueueStatus,
    RunStatus,
    SenderStatus,
    ServiceStatus,
)
from arroyo_core.verify import VerifyingSink


def full_service() -> ServiceStatus:
    """A record with every field set to something other than its default."""
    sender = SenderStatus(received=55, first_seq=3, next_seq=63, missing=5,
                          missing_ranges=[[10, 14]], duplicates=1)
    run = RunStatus(run="r1", frames=90, bytes=9000, frames_sent=100, lost=10, duplicates=0,
                    missing_ranges=[[10, 14], [50, 54]], seconds=2.5, frames_per_s=36.0,
                    mb_per_s=0.0036, complete=True, corrupt=1, crc_checked=90)
    link_in = LinkStatus(name="input sub >tcp://h:2", direction="input", address=">tcp://h:2",
                         scheme="tcp", pattern="sub", received=55, missing=5, duplicates=1,
                         malformed={"msgpack": 2}, senders={"M": sender},
                         lag=LagStatus(lag=0.1, max_lag=0.5, late=2, worst_lag=0.7),
                         unhandled=2,
                         transport={"peers": {"peers": 1, "disconnects": 0},
                                    "connections": {"dropped": 0, "refused": {"curve": 1}}})
    link_out = LinkStatus(name="output pub @tcp://*:3", direction="output", address="@tcp://*:3",
                          scheme="tcp", pattern="pub", sent=60, dropped={"no subscriber": 3},
                          src="S", next_seq=63, transport={"subscribers": 2, "overflow": "block"})
    sink = LinkStatus(name="verifying sink", direction="output", kind="sink", runs=[run])
    return ServiceStatus(
        name="sink", uptime=12.5, ready=True, input=link_in,
        queue=QueueStatus(name="input queue", policy="drop-oldest", max_items=8,
                          max_bytes=2**20, depth=3, bytes=300, sent=58,
                          dropped={"drop-oldest: queue full": 2}),
        operator=OperatorStatus(type="PassThrough", processed=57, errors={"ValueError": 1}),
        outputs=[link_out, sink], error=None)


def test_the_dict_form_round_trips_through_msgpack_and_json():
    record = full_service()
    data = record.to_dict()
    assert ServiceStatus.from_dict(msgpack.unpackb(msgpack.packb(data))) == record
    assert ServiceStatus.from_dict(json.loads(json.dumps(data))) == record


def test_a_links_transport_details_sit_beside_its_fields():
    """As they always have on the wire: ``status["input"]["connections"]["refused"]``."""
    data = full_service().to_dict()
    assert data["input"]["link"] == "input sub >tcp://h:2"  # a link's name, as it always was
    assert data["input"]["connections"]["refused"] == {"curve": 1}
    assert data["input"]["senders"]["M"]["missing_ranges"] == [[10, 14]]
    assert data["outputs"][0]["subscribers"] == 2 and "transport" not in data["outputs"][0]
    assert data["outputs"][1]["runs"][0]["lost"] == 10


def test_a_plugin_with_plain_stats_gets_a_record_by_the_same_rule():
    """Keys that name a field and fit its type are the field; the rest stays as it was."""
    order_runs = [{"run": "a", "frames": 3, "stopped": True, "out_of_order": []}]
    record = LinkStatus.from_stats({"link": "order sink", "sent": 5, "runs": order_runs,
                                    "stray": []}, "output", "OrderSink")
    assert (record.name, record.kind, record.sent, record.runs) == ("order sink", "sink", 5, None)
    assert record.transport == {"runs": order_runs, "stray": []}
    assert record.to_dict()["runs"] == order_runs  # the plug-in's own key, as it reported it
    assert LinkStatus.from_dict(record.to_dict()) == record

    ledger = {"link": "input redis", "received": 4, "missing": 1, "duplicates": 0,
              "malformed": {}, "senders": {"S": {"received": 4, "first_seq": 0, "next_seq": 5,
                                                 "missing": 1, "missing_ranges": [[2, 2]],
                                                 "duplicates": 0}},
              "redis": {"outages": 1, "connected": True}}
    redis = LinkStatus.from_stats(ledger, "input", "RedisStreamListener")
    assert redis.received == 4 and redis.senders["S"].missing_ranges == [[2, 2]]
    assert redis.transport == {"redis": {"outages": 1, "connected": True}}
    assert LinkStatus.from_stats({}, "input", "MyListener").name == "MyListener"


def test_a_transport_key_never_shadows_a_field():
    record = LinkStatus(name="out", direction="output", sent=1)
    record = record.with_transport({"pattern": "push", "sent": 99, "link": "x",
                                    "overflow": "block"})
    assert record.pattern == "push" and record.sent == 1 and record.name == "out"
    assert record.transport == {"transport sent": 99, "transport link": "x", "overflow": "block"}
    assert LinkStatus.from_dict(record.to_dict()) == record


def test_links_report_address_scheme_pattern_and_lag():
    out = OutputLink("@tcp://127.0.0.1:5599", pattern="pub")
    record = out.status()
    assert (record.address, record.scheme, record.pattern) == ("@tcp://127.0.0.1:5599", "tcp",
                                                               "pub")
    assert record.fans_out and record.src == out.src and record.next_seq == 0
    assert InputLink("tcp://127.0.0.1:5599", max_lag=1).status().lag == LagStatus(
        lag=0.0, max_lag=1.0, late=0, worst_lag=0.0)


def test_an_address_is_shown_without_its_password():
    assert Address.parse("redis://:secret@h:6379/0?stream=s", False).shown == (
        ">redis://:***@h:6379/0?stream=s")
    assert Address.parse("@tcp://*:5555", False).shown == "@tcp://*:5555"


class Counting(Publisher):
    """A user's sink that reports plain counters."""

    def __init__(self) -> None:
        self.count = 0

    def publish(self, message):
        self.count += 1

    def stats(self):
        return {"link": "counting", "sent": self.count, "mine": [1, 2]}


def test_the_runtime_makes_the_record_from_its_parts():
    messages = [Start({"run": "r"}),
                *(Event({"run": "r", "frame": i}, {"x": np.zeros(4, np.uint8)})
                  for i in (0, 1, 3, 3)),
                Stop({"run": "r", "frames_sent": 4})]
    verifying, collecting, counting = VerifyingSink(), CollectingSink(), Counting()
    runtime = Runtime(MemoryListener(messages), PassThrough(),
                      [verifying, collecting, counting])
    runtime.run()
    status = runtime.status()
    assert status.input is not None and status.input.kind == "source"
    assert status.queue is not None and (status.queue.depth, status.queue.bytes) == (0, 0)
    assert status.operator == OperatorStatus(type="PassThrough", processed=6, errors={},
                                             events_in=4, events_out=4)
    run = status.outputs[0].runs[0]
    assert (run.frames, run.lost, run.duplicates, run.missing_ranges) == (4, 1, 1, [[2, 2]])
    assert (run.bytes, run.complete, run.crc_checked) == (16, True, 0)
    assert status.outputs[1].sent == 6 and status.outputs[2].sent == 6
    assert status.outputs[2].transport == {"mine": [1, 2]}
    assert ServiceStatus.from_dict(status.to_dict()) == status
    assert set(runtime.stats()) == set(status.to_dict())


def test_keys_a_newer_service_adds_are_left_out_not_misread():
    data = full_service().to_dict()
    data["queue"]["newer"] = 1
    data["input"]["senders"]["M"]["newer"] = 2
    data["outputs"][1]["runs"][0]["newer"] = 3
    record = ServiceStatus.from_dict(data)
    assert record == full_service()
