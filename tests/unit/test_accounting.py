"""What does not go on is accounted for: an operator's filtered and failed events and a
queue's policy drops travel in the run's Stop, and no ledger after counts them as lost."""

from __future__ import annotations

import numpy as np

from arroyo_core import CollectingSink, MemoryListener, Operator, PassThrough, Runtime, StatsSink
from arroyo_core.message import Event, Start, Stop
from arroyo_core.queues import MessageQueue
from arroyo_core.run_ledger import RunLedger


def run_of(frames: int, stop_meta: dict | None = None) -> list:
    return [Start({"run": "r"}),
            *(Event({"run": "r", "frame": i}, {"x": np.zeros(4, np.uint8)})
              for i in range(frames)),
            Stop({"run": "r", "frames_sent": frames, **(stop_meta or {})})]


class Sorting(Operator):
    """Filters odd frames, raises on frames that are multiples of 4, passes the rest."""

    def on_event(self, event):
        frame = event.meta["frame"]
        if frame % 4 == 0:
            raise ValueError(frame)
        return None if frame % 2 else event


def test_the_stop_carries_this_hops_filtered_and_failed_added_to_upstreams():
    collecting, stats = CollectingSink(), StatsSink(interval=0)
    runtime = Runtime(MemoryListener(run_of(12, {"filtered": 5, "dropped": 1})), Sorting(),
                      [collecting, stats])
    runtime.run()
    stop = collecting.messages[-1]
    assert stop.kind == "stop"
    assert (stop.meta["filtered"], stop.meta["failed"], stop.meta["dropped"]) == (11, 3, 1)
    operator = runtime.status().operator
    assert operator is not None
    assert (operator.events_in, operator.events_out) == (12, 3)
    assert (operator.filtered, operator.failed) == (6, 3)
    (run,) = stats.status().runs or []
    # 12 sent (as far as this hop knows), 3 arrived, 6 + 3 accounted here: and the Stop's
    # upstream counts are not this hop's frames, so they cannot make lost negative.
    assert (run.frames, run.filtered, run.failed, run.lost) == (3, 11, 3, 0)


def test_a_stop_with_nothing_to_account_for_goes_on_unchanged():
    collecting = CollectingSink()
    Runtime(MemoryListener(run_of(3)), PassThrough(), [collecting]).run()
    assert collecting.messages[-1].meta == {"run": "r", "frames_sent": 3}


def test_a_queue_counts_its_policy_drops_per_run_until_taken():
    queue = MessageQueue(max_items=1, policy="drop-newest")
    for message in run_of(3)[:3]:  # the Start fills the queue: both events are dropped
        queue.put(message)
    assert queue.take_dropped("r") == 2
    assert queue.take_dropped("r") == 0


def test_a_run_ledger_subtracts_what_the_stop_accounts_for_from_its_losses():
    ledger = RunLedger("in")
    for message in run_of(10)[:-1]:
        if message.kind != "event" or message.meta["frame"] % 2 == 0:
            ledger.observe(message)
    ledger.observe(Stop({"run": "r", "frames_sent": 10, "filtered": 4, "failed": 1}))
    (record,) = ledger.status()
    assert (record.missing, record.filtered, record.failed, record.lost) == (5, 4, 1, 0)
    ledger = RunLedger("in")
    for message in run_of(10)[:-1]:
        if message.kind != "event" or message.meta["frame"] % 2 == 0:
            ledger.observe(message)
    ledger.observe(Stop({"run": "r", "frames_sent": 10, "filtered": 3}))
    (record,) = ledger.status()
    assert record.lost == 2
