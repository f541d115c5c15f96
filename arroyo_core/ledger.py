"""Loss ledger: what each link received, missed, duplicated and rejected.

Sequence numbers are per sender (``src`` in the header), so a fan-in link or a sender
that restarted (new ``src``) is accounted for correctly.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Any

from .gaps import MAX_RANGES, GapCounter
from .status import LinkStatus, SenderStatus

__all__ = ["MAX_RANGES", "InputLedger", "OutputLedger", "wire_bytes"]

log = logging.getLogger(__name__)

SHARE_WINDOW = 16384  # numbers a receiver of a share remembers, to tell duplicates


class _SenderGaps(GapCounter):
    """One sender's sequence numbers as a link saw them: it logs each gap."""

    __slots__ = ("link", "src")

    def __init__(self, link: str, src: str) -> None:
        super().__init__(start=None)  # a link joining a sender mid-stream has lost nothing
        self.link = link
        self.src = src

    def skipped(self, first: int, last: int) -> None:
        log.warning("%s: lost messages %d..%d from sender %s", self.link, first, last, self.src)


def wire_bytes(frames: Any) -> int:
    """Bytes of a message's frames: flat byte buffers (bytes, byte views, uint8 arrays,
    zmq Frames), as the wire codec makes and reads them, so ``len`` is their size."""
    return sum(map(len, frames))


class _Share:
    """One sender's numbers as one of several receivers sharing its messages sees them (the
    competing consumers of a work queue): the numbers between are the others' share, so
    nothing counts as missing; and an earlier number is a duplicate only if this receiver
    saw it, since it may be one that another receiver took and died with, delivered here
    again. The last ``window`` numbers seen are remembered."""

    __slots__ = ("seen", "duplicates", "missing", "first", "expected", "ranges", "_recent",
                 "_order", "_window")

    def __init__(self, window: int = SHARE_WINDOW) -> None:
        self.seen = self.duplicates = self.missing = 0
        self.first: int | None = None
        self.expected: int | None = None  # one past the highest seen
        self.ranges: list[list[int]] = []
        self._recent: set[int] = set()
        self._order: deque[int] = deque()
        self._window = window

    def observe(self, number: int) -> int:
        """0 if ``number`` is new here, -1 if this receiver saw it before."""
        if number in self._recent:
            self.duplicates += 1
            return -1
        self._recent.add(number)
        self._order.append(number)
        if len(self._order) > self._window:
            self._recent.discard(self._order.popleft())
        self.seen += 1
        if self.first is None:
            self.first = number
        if self.expected is None or number >= self.expected:
            self.expected = number + 1
        return 0


class InputLedger:
    """Counts for one input link; ``observe`` is on the hot path, so it stays small.

    ``shared``: the link receives a share of each sender's messages (its transport
    receiver's ``shares_sequence``), so gaps are not counted and duplicates are told by
    the numbers seen (:class:`_Share`).
    """

    def __init__(self, link: str, shared: bool = False) -> None:
        self.link = link
        self.shared = shared
        self.senders: dict[str, GapCounter | _Share] = {}
        self.malformed: Counter[str] = Counter()
        self.bytes = 0  # of every message received, malformed or duplicate too

    def observe(self, src: str, seq: int) -> bool:
        """Record one message; return False if it is a duplicate (already seen)."""
        track = self.senders.get(src)
        if track is None:
            track = _Share() if self.shared else _SenderGaps(self.link, src)
            self.senders[src] = track
            if seq:
                log.info("%s: first message from sender %s has seq %d", self.link, src, seq)
        return track.observe(seq) >= 0

    def observe_many(self, src: str, seq: int, messages: list[Any]) -> list[Any]:
        """Record ``messages``, numbered ``seq`` on (a batch); return those that are not
        duplicates. One step for a batch that follows on from the sender's last number."""
        track = self.senders.get(src)
        if isinstance(track, GapCounter) and track.observe_next(seq, len(messages)):
            return messages
        return [message for index, message in enumerate(messages)
                if self.observe(src, seq + index)]

    @property
    def received(self) -> int:
        """Messages received once (duplicates are not)."""
        return sum(track.seen for track in list(self.senders.values()))

    def reject(self, reason: str, detail: str) -> None:
        """Count a malformed message; log the first of each reason with what was wrong."""
        self.malformed[reason] += 1
        if self.malformed[reason] == 1:
            log.error("%s: rejected a malformed message (%s); further ones of this kind are "
                      "only counted", self.link, detail)

    def status(self, **fields: Any) -> LinkStatus:
        """The link's record with these counters; ``fields`` give the rest."""
        senders = {src: SenderStatus(received=t.seen, first_seq=t.first or 0,
                                     next_seq=t.expected or 0, missing=t.missing,
                                     missing_ranges=[list(r) for r in t.ranges],
                                     duplicates=t.duplicates)
                   for src, t in list(self.senders.items())}
        return LinkStatus(name=self.link, direction="input",
                          received=sum(s.received for s in senders.values()),
                          missing=sum(s.missing for s in senders.values()),
                          duplicates=sum(s.duplicates for s in senders.values()),
                          malformed=dict(self.malformed), senders=senders,
                          bytes=self.bytes, **fields)

    def stats(self) -> dict[str, Any]:
        record = self.status()
        return {"link": self.link, "received": record.received, "missing": record.missing,
                "duplicates": record.duplicates, "malformed": record.malformed,
                "senders": {src: s.to_dict() for src, s in record.senders.items()}}


class OutputLedger:
    """Counts for one output link."""

    def __init__(self, link: str) -> None:
        self.link = link
        self.sent = 0
        self.bytes = 0  # wire bytes of what was sent
        self.dropped: Counter[str] = Counter()

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        if self.dropped[reason] == 1:
            log.warning("%s: dropped a message (%s); further drops are only counted",
                        self.link, reason)

    def status(self, **fields: Any) -> LinkStatus:
        """The link's record with these counters; ``fields`` give the rest."""
        return LinkStatus(name=self.link, direction="output", sent=self.sent,
                          bytes=self.bytes, dropped=dict(self.dropped), **fields)

    def stats(self) -> dict[str, Any]:
        return {"link": self.link, "sent": self.sent, "dropped": dict(self.dropped)}
