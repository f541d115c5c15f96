"""The ledger of a facility stream whose numbers skip as a matter of course: a PV Access
client that falls behind is sent only the newest frame, a karabo-bridge on PUB drops
trains for a slow subscriber. Every gap is counted, as on any link, but only the first of
each run is logged (a line per gap would cost more than the frames at hundreds a second);
the run's end logs what it lost (:mod:`arroyo_core.run_ledger`).
"""

from __future__ import annotations

import logging

from .gaps import GapCounter
from .ledger import InputLedger

log = logging.getLogger(__name__)


class _RunGaps(GapCounter):
    """One run's numbers (a train id, a uniqueId): logs its first gap only."""

    __slots__ = ("link", "run")

    def __init__(self, link: str, run: str) -> None:
        super().__init__(start=None)
        self.link, self.run = link, run

    def skipped(self, first: int, last: int) -> None:
        if len(self.ranges) == 1 and self.missing == last - first + 1:
            log.warning("%s: numbers %d..%d of run %s never came; further gaps are only "
                        "counted", self.link, first, last, self.run)


class StreamLedger(InputLedger):
    """An input ledger keyed by run (the ``src`` of :meth:`observe` is the run's id)."""

    def observe(self, src: str, seq: int) -> bool:
        track = self.senders.get(src)
        if track is None:
            track = self.senders[src] = _RunGaps(self.link, src)
        return track.observe(seq) >= 0
