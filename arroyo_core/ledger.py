"""Loss ledger: what each link received, missed, duplicated and rejected.

Sequence numbers are per sender (``src`` in the header), so a fan-in link or a sender
that restarted (new ``src``) is accounted for correctly.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

log = logging.getLogger(__name__)

MAX_RANGES = 32  # missing ranges kept per sender; the count is always exact


class _SenderTrack:
    __slots__ = ("next_seq", "received", "missing", "duplicates", "ranges", "first_seq")

    def __init__(self) -> None:
        self.first_seq = 0  # > 0: this link joined the sender late (or restarted)
        self.next_seq = 0
        self.received = 0
        self.missing = 0
        self.duplicates = 0
        self.ranges: list[list[int]] = []


class InputLedger:
    """Counts for one input link; ``observe`` is on the hot path, so it stays small."""

    def __init__(self, link: str) -> None:
        self.link = link
        self.senders: dict[str, _SenderTrack] = {}
        self.malformed: Counter[str] = Counter()
        self.received = 0

    def observe(self, src: str, seq: int) -> bool:
        """Record one message; return False if it is a duplicate (already seen)."""
        track = self.senders.get(src)
        if track is None:
            track = self.senders[src] = _SenderTrack()
            track.next_seq = track.first_seq = seq  # joining mid-stream: not this link's loss
            if seq:
                log.info("%s: first message from sender %s has seq %d", self.link, src, seq)
        if seq == track.next_seq:
            track.next_seq = seq + 1
        elif seq > track.next_seq:
            gap = [track.next_seq, seq - 1]
            track.missing += seq - track.next_seq
            if len(track.ranges) < MAX_RANGES:
                track.ranges.append(gap)
            log.warning("%s: lost messages %d..%d from sender %s", self.link, gap[0], gap[1], src)
            track.next_seq = seq + 1
        else:
            track.duplicates += 1
            return False
        track.received += 1
        self.received += 1
        return True

    def reject(self, reason: str, detail: str) -> None:
        """Count a malformed message; log the first of each reason with what was wrong."""
        self.malformed[reason] += 1
        if self.malformed[reason] == 1:
            log.error("%s: rejected a malformed message (%s); further ones of this kind are "
                      "only counted", self.link, detail)

    def stats(self) -> dict[str, Any]:
        return {
            "link": self.link,
            "received": self.received,
            "missing": sum(t.missing for t in self.senders.values()),
            "duplicates": sum(t.duplicates for t in self.senders.values()),
            "malformed": dict(self.malformed),
            "senders": {src: {"received": t.received, "first_seq": t.first_seq,
                              "next_seq": t.next_seq,
                              "missing": t.missing, "missing_ranges": t.ranges,
                              "duplicates": t.duplicates}
                        for src, t in self.senders.items()},
        }


class OutputLedger:
    """Counts for one output link."""

    def __init__(self, link: str) -> None:
        self.link = link
        self.sent = 0
        self.dropped: Counter[str] = Counter()

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        if self.dropped[reason] == 1:
            log.warning("%s: dropped a message (%s); further drops are only counted",
                        self.link, reason)

    def stats(self) -> dict[str, Any]:
        return {"link": self.link, "sent": self.sent, "dropped": dict(self.dropped)}
