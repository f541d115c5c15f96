"""Runs made from a source's numbers: where they start and end, and what the Stops say."""

from __future__ import annotations

from arroyo_core.message import Event, Message
from arroyo_core.numbered_runs import NumberedRuns


def feed(numbers: list[tuple[int, str]]) -> tuple[list[Message], NumberedRuns]:
    """Each (number, kind) through NumberedRuns (an Event for each one it keeps), then the
    end of the last run; every message delivered, in order."""
    runs = NumberedRuns("input test", "sim", "frames", "kind changed")
    out: list[Message] = []
    for number, kind in numbers:
        run = runs.enter(number, kind, out.append, lambda run: {"run": run.id, "at": run.first})
        if run is not None:
            runs.deliver(out.append, Event({"run": run.id, "frame": number - run.first}, {}))
    runs.end(out.append, "stopped")
    return out, runs


def summary(messages: list[Message]) -> list[tuple]:
    """(kind, frame or first number or how the run ended, frames sent and kept)."""
    return [("start", m.meta["at"]) if m.kind == "start" else
            ("event", m.meta["frame"]) if m.kind == "event" else
            ("stop", m.meta["ended"], m.meta["frames_sent"], m.meta["frames"])
            for m in messages]


def test_a_run_counts_the_numbers_skipped_and_ignores_repeats():
    messages, runs = feed([(5, "a"), (6, "a"), (6, "a"), (9, "a")])
    assert summary(messages) == [("start", 5), ("event", 0), ("event", 1), ("event", 4),
                                 ("stop", "stopped", 5, 3)]
    assert messages[-1].meta["aborted"] is True
    status = runs.ledger.status(address="sim", kind="source", scheme="test").to_dict()
    assert status["missing"] == 2 and status["duplicates"] == 1


def test_numbers_going_back_or_a_new_kind_end_the_run_and_start_another():
    messages, _ = feed([(5, "a"), (6, "a"), (2, "a"), (3, "b")])
    assert summary(messages) == [("start", 5), ("event", 0), ("event", 1),
                                 ("stop", "restarted", 2, 2),
                                 ("start", 2), ("event", 0), ("stop", "kind changed", 1, 1),
                                 ("start", 3), ("event", 0), ("stop", "stopped", 1, 1)]
    runs = {m.meta["run"] for m in messages}
    assert len(runs) == 3
