"""Built-in sinks: publishers that end a chain."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .components import Publisher
from .errors import ConfigError
from .gaps import LateFilling
from .hdf5_sink import HDF5Sink
from .message import Event, Message, Start, Stop
from .run_ledger import MAX_RUNS, RUN_RANGES, SHOWN_RANGES, accounted, run_key
from .status import LinkStatus, RunStatus

log = logging.getLogger(__name__)

__all__ = ["CollectingSink", "HDF5Sink", "RunTally", "StatsSink"]  # HDF5Sink: its own module


class RunTally:
    """Frames, bytes and losses of one run, from the ``frame`` index the source stamps.

    Made at the run's Start (``start``), the run is counted from frame 0 and its rates
    from the time the source stamped in the Start (``started``, else when it arrived).
    Made at a later message (the sink joined mid-run, e.g. restarted), it counts from the
    first frame it sees, as a run ledger does: what came before went to an earlier
    instance, not lost; its rates are then from that first frame (``rate_from``), which a
    backlog inflates.
    """

    def __init__(self, run: Any, start: Start | None = None) -> None:
        self.run = run
        self.frames = 0
        self.bytes = 0
        self.joined = start is None
        # A run's frames count from 0 (joining late loses some); joined mid-run: from the
        # first one seen. Frames may come out of order (after a pool of workers): one
        # that fills its gap came late, it is not lost.
        self.gaps = LateFilling(start=None if self.joined else 0, max_ranges=RUN_RANGES)
        self.began = time.monotonic()
        started = start.meta.get("started") if start is not None else None
        if isinstance(started, (int, float)) and not isinstance(started, bool):
            # the clock of the source's host: the age of the run when its Start arrived
            self.began -= max(0.0, time.time() - started)
        self.ended: float | None = None
        self.frames_sent: int | None = None
        self.cut_short = False
        self.accounted = (0, 0, 0)  # the Stop's filtered, failed, dropped by policy

    def count(self, event: Event) -> None:
        self.frames += 1
        self.bytes += event.nbytes
        frame = event.meta.get("frame")
        if isinstance(frame, int):
            self.gaps.observe(frame)

    def finish(self, stop: Stop) -> None:
        self.ended = time.monotonic()
        sent = stop.meta.get("frames_sent")
        self.frames_sent = sent if isinstance(sent, int) else None
        self.accounted = accounted(stop.meta)
        self.cut_short = stop.meta.get("aborted") is True

    def status(self) -> RunStatus:
        seconds = max((self.ended or time.monotonic()) - self.began, 1e-9)
        gaps = self.gaps
        lost = gaps.missing
        filtered, failed, dropped = self.accounted
        if self.frames_sent is not None:  # also counts frames lost after the last received
            # what no hop accounts for (arroyo_core.run_ledger.ACCOUNTED); joined mid-run:
            # of the frames from the first one seen
            since = (gaps.first or 0) if self.joined else 0
            lost = max(0, self.frames_sent - since - (self.frames - gaps.duplicates)
                       - filtered - failed - dropped)
        return RunStatus(run=self.run, frames=self.frames, bytes=self.bytes,
                         frames_sent=self.frames_sent, lost=lost, duplicates=gaps.duplicates,
                         missing_ranges=[list(r) for r in gaps.ranges[:SHOWN_RANGES]],
                         seconds=seconds,
                         frames_per_s=self.frames / seconds,
                         mb_per_s=self.bytes / seconds / 1e6, complete=self.ended is not None,
                         filtered=filtered, failed=failed, policy_dropped=dropped,
                         joined_at=gaps.first if self.joined else None,
                         cut_short=self.cut_short,
                         rate_from="first frame" if self.joined else "start")


class StatsSink(Publisher):
    """Counts frames, bytes, rate and lost frames per run, and logs progress.

    Parameters
    ----------
    interval
        Seconds between progress lines (0: only the summary at each Stop).
    """

    def __init__(self, interval: float = 1.0) -> None:
        if not interval >= 0:
            raise ConfigError(f"option interval: expected 0 or more seconds, got {interval!r}")
        self.interval = interval
        self.runs: list[RunTally] = []
        self.current: RunTally | None = None
        # Runs without their Stop yet, by run id: after a pool, a run's last frames and
        # its Stop may come after the next run's Start (arroyo_core.fanin)
        self._open: dict[Any, RunTally] = {}
        self._last_log = time.monotonic()
        self._lock = threading.Lock()  # stats() is read from the status thread

    def publish(self, message: Message) -> None:
        summary = ""  # of the run a Stop ends, logged outside the lock: a signal handler
        # that reads stats() may run inside the log call, on this thread
        with self._lock:
            run = message.meta.get("run")
            tally = None if isinstance(message, Start) else self._open.get(run_key(run))
            if tally is None:
                if isinstance(message, Start) or self.current is None or (
                        self.current.ended is not None and isinstance(message, Event)):
                    tally = self._add(RunTally(run, message if isinstance(message, Start)
                                               else None))  # without a Start: joined mid-run
                else:
                    tally = self.current
            if isinstance(message, Event):
                tally.count(message)
            elif isinstance(message, Stop):
                tally.finish(message)
                self._open.pop(run_key(tally.run), None)
                summary = _line(tally.status())
        if summary:
            log.info("run summary: %s", summary)
        if self.interval and time.monotonic() - self._last_log >= self.interval:
            self._last_log = time.monotonic()
            if self.current is not None:
                log.info("progress: %s", _line(self.current.status()))

    def _add(self, tally: RunTally) -> RunTally:
        self.current = tally
        self.runs.append(tally)
        if len(self._open) >= MAX_RUNS:  # runs whose Stop never came
            del self._open[next(iter(self._open))]
        self._open[run_key(tally.run)] = tally
        return tally

    def status(self) -> LinkStatus:
        with self._lock:
            runs = [r.status() for r in self.runs]
        return LinkStatus(name="stats sink", direction="output", kind="sink", runs=runs)

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()


def _line(run: RunStatus) -> str:
    """'(cut short by its source) 206 frames, ..., lost 0, filtered 3': the notes first, so
    the line still ends in the counts."""
    notes = []
    if run.cut_short:
        notes.append("cut short by its source")
    if run.joined_at is not None:
        notes.append(f"joined mid-run at frame {run.joined_at}: rates from then, a backlog "
                     "inflates them")
    accounted = "".join(f", {name} {n}" for name, n in (
        ("filtered", run.filtered), ("failed", run.failed),
        ("dropped by policy", run.policy_dropped)) if n)
    prefix = f"({'; '.join(notes)}) " if notes else ""
    return (f"{prefix}{run.frames} frames, {run.frames_per_s:.0f} frames/s, "
            f"{run.mb_per_s:.1f} MB/s, lost {run.lost}{accounted}")


class CollectingSink(Publisher):
    """Keeps every message it is given in ``messages``: the testing sink for your operators."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def publish(self, message: Message) -> None:
        self.messages.append(message)

    def status(self) -> LinkStatus:
        return LinkStatus(name="collecting sink", direction="output", kind="sink",
                          sent=len(self.messages))

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()
