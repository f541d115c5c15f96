"""Runs made for a source that numbers what it sends but has no runs of its own (an EPICS
channel's ``uniqueId``, a karabo bridge's train id).

A run starts with the first number and ends, with a Stop, when the numbers go back (the
source restarted its count), when what is sent changes kind (dtype and shape, sources), or
when the listener says so (idle, disconnected, stopped). A message's ``frame`` is its
number minus the run's first, so every ledger downstream counts the numbers skipped; the
listener's own ledger counts them here.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from .components import Deliver
from .message import Message, Start, Stop
from .run_ledger import RunLedger
from .stream_ledger import StreamLedger

log = logging.getLogger(__name__)


class Run:
    """A run in progress: its id, first and last number, kind and count."""

    def __init__(self, number: int, kind: Any) -> None:
        self.id = uuid.uuid4().hex
        self.first = self.last = number
        self.kind = kind
        self.count = 0
        self.began = time.monotonic()


class NumberedRuns:
    """The runs of one numbered source, and its ledgers.

    Parameters
    ----------
    link
        The listener's name in logs and ledgers.
    sender
        The name the run ledger gives the source.
    unit
        What the Stop counts (``frames``, ``trains``).
    changed
        The Stop's ``ended`` when the kind changes.
    """

    def __init__(self, link: str, sender: str, unit: str, changed: str) -> None:
        self.ledger = StreamLedger(link)
        self.runs = RunLedger(link)
        self.sender, self.unit, self.changed = sender, unit, changed
        self.run: Run | None = None

    def enter(self, number: int, kind: Any, deliver: Deliver,
              start: Callable[[Run], dict[str, Any]]) -> Run | None:
        """The run that ``number`` belongs to, with a Stop delivered first if it ends one
        and a Start (of ``start(run)``) if it begins one; None for a number seen before."""
        run = self.run
        if run is not None:
            if number < run.last:
                self.end(deliver, "restarted")
            elif kind != run.kind:
                self.end(deliver, self.changed)
        if self.run is None:
            self.run = Run(number, kind)
            self.deliver(deliver, Start(start(self.run)))
        run = self.run
        if not self.ledger.observe(run.id, number):
            return None  # the same one again
        run.last = number
        run.count += 1
        return run

    def end(self, deliver: Deliver, reason: str) -> None:
        """End the run (there is one) with a Stop saying why."""
        run, self.run = self.run, None
        assert run is not None
        self.deliver(deliver, Stop({"run": run.id, "frames_sent": run.last - run.first + 1,
                                    self.unit: run.count, "ended": reason,
                                    "aborted": reason == "stopped",
                                    "seconds": time.monotonic() - run.began}))
        log.info("%s: run %s ended (%s) after %d %s", self.ledger.link, run.id, reason,
                 run.count, self.unit)

    def deliver(self, deliver: Deliver, message: Message) -> None:
        self.runs.observe(message, self.sender)
        deliver(message)
