"""The run ledger: which of each run's frame numbers a link saw.

A link's sequence numbers (``seq``, :mod:`arroyo_core.ledger`) start again with every
sending process, so a frame lost inside a stage that was killed leaves no gap in any of
them: the restarted stage sends under a new sender id. The frame numbers a source stamps
(``run`` in every message, ``frame`` in each Event, ``frames_sent`` in the Stop;
docs/protocol.md section 1.1) survive every hop and every restart, so every link keeps,
per run, which frame numbers it has seen: a loss shows at the first hop after it, however
many sender ids the run arrived under and whatever kind of sink ends the chain.

An input link counts what arrived; an output link counts what it handed to its transport
(and what it dropped itself), so the last output of a chain says what left it.

A worker of a pool (:mod:`arroyo_core.dispatch`) gets a share of each run, whose Start and
Stop say so (``pool``): its links count that run as a :class:`ShareFrames`, what came
against the ``share`` the Stop gives, so the other workers' frames are not missing here.
The stage after the pool counts the whole run again (:mod:`arroyo_core.fanin`).

Memory is bounded: per run, at most ``RUN_RANGES`` missing ranges (the count stays exact;
see :class:`~arroyo_core.gaps.LateFilling`), and at most ``MAX_RUNS`` runs per link (the
oldest finished one is forgotten first).
"""

from __future__ import annotations

import logging
from typing import Any

from .gaps import LateFilling
from .message import Message
from .status import RunLedgerStatus

__all__ = ["ACCOUNTED", "MAX_RUNS", "RUN_RANGES", "SHOWN_RANGES", "RunFrames", "RunLedger",
           "ShareFrames", "accounted", "run_key"]

log = logging.getLogger(__name__)

MAX_RUNS = 16  # runs a link keeps; the oldest finished one is forgotten first
RUN_RANGES = 1024  # missing ranges kept per run: gaps a reordered run may have open at once
# Keys of a run's Stop that count frames the chain did not lose but did not pass on either:
# events an operator filtered (returned no event for) or failed on (raised), and events an
# overflow policy dropped (a queue's or an output link's), each summed over every hop so far.
ACCOUNTED = ("filtered", "failed", "dropped")
SHOWN_RANGES = 32  # of them, in a status record
MAX_SENDERS = 256  # sender ids counted per run (a restart, a pool worker: one each)


class RunFrames(LateFilling):
    """One run's frame numbers as one link saw them.

    Counted from frame 0 if the link saw the run's Start, else from the first frame it saw
    (it joined mid-run: what came before went elsewhere, e.g. to a killed predecessor).
    """

    __slots__ = ("run", "started", "complete", "cut_short", "frames_sent", "dropped",
                 "accounted", "_srcs", "_src")

    def __init__(self, run: Any, started: bool) -> None:
        super().__init__(start=0 if started else None, max_ranges=RUN_RANGES)
        self.run = run
        self.started = started
        self.complete = False
        self.cut_short = False
        self.frames_sent: int | None = None
        self.dropped = 0  # frames an output link dropped itself (not handed on)
        self.accounted = (0, 0, 0)  # the Stop's filtered, failed, dropped (ACCOUNTED)
        self._srcs: set[str] = set()  # sender ids the run arrived under (MAX_SENDERS kept)
        self._src: str | None = None

    def begin(self) -> None:
        """The run's Start came after some of its frames: count from frame 0 after all."""
        self.started = True
        if self.start is None and self.first is not None and self.first > 0:
            self.ranges.insert(0, [0, self.first - 1])
            del self.ranges[self.max_ranges:]
            self.missing += self.first
        self.start = 0

    def sender(self, src: str) -> None:
        """A message of this run came from ``src`` (called when the sender changes)."""
        self._src = src
        if len(self._srcs) < MAX_SENDERS:
            self._srcs.add(src)

    def status(self) -> RunLedgerStatus:
        """The record; once the Stop says how many frames were sent, the frames after the
        last one seen count as missing too."""
        ranges = [list(pair) for pair in self.ranges[:SHOWN_RANGES]]
        missing = self.missing
        following = self.expected
        if self.frames_sent is not None and following is not None \
                and self.frames_sent > following:
            missing += self.frames_sent - following
            if len(ranges) < SHOWN_RANGES and len(self.ranges) < self.max_ranges:
                ranges.append([following, self.frames_sent - 1])
        return RunLedgerStatus(
            run=self.run, seen=self.seen, first=self.first,
            next=self._next, expected=self.frames_sent, missing=missing,
            missing_ranges=ranges, duplicates=self.duplicates, late=self.late,
            dropped=self.dropped, senders=len(self._srcs), started=self.started,
            complete=self.complete, filtered=self.accounted[0], failed=self.accounted[1],
            policy_dropped=self.accounted[2], cut_short=self.cut_short)


class ShareFrames(RunFrames):
    """One run as a pool's worker saw it: its share of the frames, whose numbers are
    scattered (every other worker has some), so only counted: missing is what the Stop's
    ``pool.share`` says it was given and did not see."""

    __slots__ = ("share", "base")

    def __init__(self, run: Any, started: bool) -> None:
        super().__init__(run, started)
        self.share: int | None = None
        self.base = (0, 0, 0)  # the Stop's accounted counts as the pool got them

    def observe(self, number: int) -> int:
        self.seen += 1
        return 0

    def status(self) -> RunLedgerStatus:
        missing = max(0, self.share - self.seen) if self.share is not None else 0
        own = [max(0, a - b) for a, b in zip(self.accounted, self.base, strict=True)]
        return RunLedgerStatus(
            run=self.run, seen=self.seen, first=None, next=None, expected=self.share,
            missing=missing, missing_ranges=[], duplicates=0, late=0, dropped=self.dropped,
            senders=len(self._srcs), started=self.started, complete=self.complete,
            filtered=own[0], failed=own[1], policy_dropped=own[2], cut_short=self.cut_short,
            share=True)


class RunLedger:
    """Per run, the frame numbers one link saw; ``observe`` is on the hot path.

    Parameters
    ----------
    link
        The link's name, for log lines.
    max_runs
        Runs kept; past it the oldest finished run (else the oldest) is forgotten.
    """

    def __init__(self, link: str, max_runs: int = MAX_RUNS) -> None:
        self.link = link
        self.max_runs = max_runs
        self.runs: dict[Any, RunFrames] = {}
        self.forgotten = 0  # runs dropped to keep the bound
        self._run: Any = None  # the run of the last message, and its counter (None: none)
        self._frames: RunFrames | None = None

    def observe(self, message: Message, src: str | None = None) -> None:
        """Count one message that arrived (an input) or was sent on (an output)."""
        meta = message.meta
        run = meta.get("run")
        frames = self._frames
        if frames is None or run != self._run:
            frames = self._find(run, message.kind == "start", "pool" in meta)
        if src is not None and src != frames._src:
            frames.sender(src)
        kind = message.kind
        if kind == "event":
            number = meta.get("frame")
            if number.__class__ is int:  # not a bool, not a float: see protocol.md 1.1
                frames.observe(number)
        elif kind == "start":
            if not frames.started:
                frames.begin()
        elif kind == "stop":
            self._finish(frames, meta)

    def drop(self, message: Message) -> None:
        """An output link dropped ``message`` instead of sending it (counted by run)."""
        if message.kind == "event":
            run = message.meta.get("run")
            frames = self._frames if run == self._run and self._frames is not None \
                else self._find(run, False, False)
            frames.dropped += 1

    def _find(self, run: Any, starting: bool, share: bool) -> RunFrames:
        """The run's counter, made if new (off the hot path: once per run change); a
        worker's share of the run if the message says it went through a pool's dispatch."""
        key = run_key(run)
        frames = self.runs.get(key)
        if frames is None:
            if len(self.runs) >= self.max_runs:
                self._forget()
            kind = ShareFrames if share else RunFrames
            frames = self.runs[key] = kind(run, started=starting)
        self._run, self._frames = run, frames
        return frames

    def _forget(self) -> None:
        finished = [key for key, frames in self.runs.items() if frames.complete]
        del self.runs[finished[0] if finished else next(iter(self.runs))]
        self.forgotten += 1

    def _finish(self, frames: RunFrames, meta: dict[str, Any]) -> None:
        sent = meta.get("frames_sent")
        frames.frames_sent = sent if sent.__class__ is int else None
        frames.accounted = accounted(meta)
        frames.cut_short = meta.get("aborted") is True
        frames.complete = True
        pool = meta.get("pool")
        if isinstance(frames, ShareFrames) and isinstance(pool, dict):
            share, base = pool.get("share"), pool.get("accounted")
            frames.share = share if share.__class__ is int else None
            if isinstance(base, list) and len(base) == len(ACCOUNTED):
                frames.base = accounted(dict(zip(ACCOUNTED, base, strict=True)))
        record = frames.status()
        if record.lost:
            log.warning("%s: run %s ended with %d of its frames lost before here %s (%d seen%s%s)",
                        self.link, _short(frames.run), record.lost,
                        _ranges(record.missing_ranges), record.seen, _accounted(record),
                        "" if frames.started else f", from frame {frames.first}")
        else:
            log.info("%s: run %s ended with no frame lost before here (%d seen%s)", self.link,
                     _short(frames.run), record.seen, _accounted(record))

    def dropped(self, run: Any) -> int:
        """Frames of ``run`` this (output) link dropped itself so far."""
        frames = self.runs.get(run_key(run))
        return frames.dropped if frames is not None else 0

    def status(self) -> list[RunLedgerStatus]:
        """A record per run kept, oldest first."""
        return [frames.status() for frames in list(self.runs.values())]


def accounted(meta: dict[str, Any]) -> tuple[int, int, int]:
    """A Stop's counts of frames filtered, failed and dropped by policy (0 where absent)."""
    found = [meta.get(key) for key in ACCOUNTED]
    filtered, failed, dropped = (n if n.__class__ is int and n > 0 else 0 for n in found)
    return filtered, failed, dropped


def _accounted(record: RunLedgerStatus) -> str:
    parts = [f"{name} {n}" for name, n in (("filtered", record.filtered),
                                           ("failed", record.failed),
                                           ("dropped by policy", record.policy_dropped)) if n]
    return "".join(f", {part}" for part in parts)


def run_key(run: Any) -> Any:
    """A dict key for a run id (msgpack may give an unhashable one, e.g. a list)."""
    try:
        hash(run)
    except TypeError:
        return repr(run)
    return run


def _short(run: Any) -> str:
    return str(run)[:12]


def _ranges(ranges: list[list[int]]) -> str:
    shown = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:8])
    return f"[{shown}{', ...' if len(ranges) > 8 else ''}]"
