"""What `arroyo monitor` makes of successive status records (services.monitor_model)."""

from __future__ import annotations

from arroyo_core.status import (
    LagStatus,
    LinkStatus,
    OperatorStatus,
    QueueStatus,
    RunLedgerStatus,
    RunStatus,
    ServiceStatus,
)
from services.monitor_model import StageTracker, counts


def operator(uptime: float, received: int, sent: int, depth: int = 0, missing: int = 0,
             errors: int = 0) -> ServiceStatus:
    ledger = RunLedgerStatus(run="abcdef0123", seen=sent, first=0, next=sent, expected=None,
                             missing=0, missing_ranges=[], duplicates=0, late=0)
    return ServiceStatus(
        name="operator", uptime=uptime, ready=True,
        input=LinkStatus("input pull", "input", received=received, missing=missing,
                         malformed={"msgpack": 1} if errors else {},
                         lag=LagStatus(lag=0.25, max_lag=1.0, late=0, worst_lag=0.3)),
        queue=QueueStatus("input queue", "block", max_items=64, max_bytes=2**30, depth=depth,
                          bytes=0, sent=received, dropped={"replaced": 3}),
        operator=OperatorStatus("PassThrough", processed=received,
                                errors={"ValueError": errors} if errors else {}),
        outputs=[LinkStatus("output push", "output", sent=sent, run_ledger=[ledger],
                            transport={"bytes": sent * 1000})])


def test_rates_come_from_the_difference_between_two_samples():
    tracker = StageTracker("tcp://127.0.0.1:6001")
    first = tracker.update(10.0, operator(1.0, received=100, sent=100))
    assert first.service == "operator" and first.state == "up"
    assert first.rate is None and first.mb_per_s is None  # one sample has no rate
    row = tracker.update(12.0, operator(3.0, received=300, sent=250, depth=48))
    assert row.rate == 75.0  # (250 - 100) sent in 2 s
    assert row.mb_per_s == 0.075
    assert (row.received, row.sent, row.queue_depth, row.queue_max) == (300, 250, 48, 64)
    assert row.queue_fill == 0.75
    assert row.lag == 0.25 and row.dropped == 3
    assert (row.run, row.frame) == ("abcdef01", 250)


def test_a_restart_is_counted_and_no_rate_spans_it():
    tracker = StageTracker("op")
    tracker.update(0.0, operator(50.0, received=5000, sent=5000))
    row = tracker.update(1.0, operator(0.5, received=20, sent=20))
    assert row.state == "restarted" and row.restarts == 1
    assert row.rate is None  # not (20 - 5000) / 1 s
    row = tracker.update(2.0, operator(1.5, received=70, sent=70))
    assert row.state == "up" and row.restarts == 1 and row.rate == 50.0


def test_a_service_not_up_yet_then_silent_keeps_its_last_numbers():
    tracker = StageTracker("sink")
    assert tracker.update(0.0, None).state == "not up yet"
    tracker.update(1.0, operator(1.0, received=10, sent=10, missing=2, errors=4))
    row = tracker.update(2.0, None)
    assert row.state == "no answer 0s" and row.sent == 10 and row.rate is None
    row = tracker.update(5.0, None)
    assert row.state == "no answer 3s"
    assert row.lost == 2 and row.errors == 5  # 1 malformed + 4 operator errors


def test_a_counting_sink_is_counted_by_the_frames_it_took():
    run = RunStatus(run="r1", frames=40, bytes=40_000, frames_sent=None, lost=3, duplicates=0,
                    missing_ranges=[[5, 7]], seconds=1.0, frames_per_s=40.0, mb_per_s=0.04,
                    complete=False)
    sink = ServiceStatus(name="sink", ready=True,
                         input=LinkStatus("input pull", "input", received=43),
                         outputs=[LinkStatus("stats", "output", kind="sink", runs=[run])])
    assert counts(sink) == {"received": 43, "sent": 40, "bytes": 40_000}
    assert StageTracker("sink").update(0.0, sink).lost == 3
