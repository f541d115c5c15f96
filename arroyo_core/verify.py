"""A sink that proves a chain delivered every frame intact: the end-to-end ledger.

Per-hop ledgers count sequence numbers, which each sending service restarts when it
restarts, so a frame lost inside a process that was killed leaves no gap in any surviving
ledger. The frame index the source stamps (``meta['frame']``) and its Stop's
``frames_sent`` survive every hop, so the last stage can count exactly what the chain as
a whole lost, which frames (ranges), what came twice, and, with the source's ``crc32``
(:class:`~arroyo_core.sources.SimulatedDetector` ``checksum=True``), what came corrupted.
"""

from __future__ import annotations

import logging
import threading
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from .components import Publisher
from .message import Event, Message, Start, Stop
from .sinks import RunTally
from .status import LinkStatus, RunStatus

log = logging.getLogger(__name__)


def payload_crc32(event: Event) -> int:
    """zlib crc32 of an Event's payload buffers, in payload order."""
    crc = 0
    for value in event.payload.values():
        if isinstance(value, np.ndarray):  # any dtype, as the bytes that travelled
            value = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
        # numpy's stubs give ndarray __buffer__ only for Python >= 3.12; it is a buffer
        crc = zlib.crc32(value, crc)  # type: ignore[arg-type]
    return crc


class CheckedRun(RunTally):
    """A run's tally plus the frames that failed their CRC."""

    def __init__(self, run: Any, start: Start | None = None) -> None:
        super().__init__(run, start)
        self.corrupt = 0
        self.checked = 0

    def check(self, event: Event) -> bool:
        self.count(event)
        frame = event.meta.get("frame")
        expected = event.meta.get("crc32")
        if not isinstance(expected, int):
            return True
        self.checked += 1
        if payload_crc32(event) == expected:
            return True
        self.corrupt += 1
        if self.corrupt == 1:
            log.error("run %s: frame %s arrived corrupted (crc32 differs); further ones are "
                      "only counted", self.run, frame)
        return False

    def status(self) -> RunStatus:
        status = super().status()
        status.corrupt, status.crc_checked = self.corrupt, self.checked
        return status


class VerifyingSink(Publisher):
    """Counts per run what arrived, what was lost (with frame ranges), duplicated or
    corrupted. A testing sink shipped with the library, for proving a deployment.

    Parameters
    ----------
    record
        A file to append one line per Event to (``run frame ok``), flushed at each Stop,
        so a test can count what arrived independently of the sink's own arithmetic.
    """

    def __init__(self, record: str | None = None) -> None:
        self.record_path = Path(record) if record else None
        self.runs: list[CheckedRun] = []
        self.current: CheckedRun | None = None
        self._record: IO[str] | None = None
        self._lock = threading.Lock()  # stats() is read from the status thread

    def open(self) -> None:
        if self.record_path is not None:
            self._record = self.record_path.open("a", encoding="utf-8")

    def publish(self, message: Message) -> None:
        with self._lock:
            if isinstance(message, Start) or self.current is None:
                self.current = CheckedRun(message.meta.get("run"),
                                          message if isinstance(message, Start) else None)
                self.runs.append(self.current)
                if isinstance(message, Start):
                    return
            if isinstance(message, Event):
                ok = self.current.check(message)
                if self._record is not None:
                    self._record.write(f"{self.current.run} {message.meta.get('frame')} "
                                       f"{int(ok)}\n")
            elif isinstance(message, Stop):
                self.current.finish(message)
                if self._record is not None:
                    self._record.flush()
                run = self.current.status()
                log.info("run %s verified: %d of %s frames, lost %s %s, %d duplicated, "
                         "%d corrupt, %d filtered, %d failed, %d dropped by policy", run.run,
                         run.frames, run.frames_sent, run.lost, run.missing_ranges,
                         run.duplicates, run.corrupt, run.filtered, run.failed,
                         run.policy_dropped)

    def close(self) -> None:
        if self._record is not None:
            self._record.close()
            self._record = None

    def status(self) -> LinkStatus:
        with self._lock:
            runs = [r.status() for r in self.runs]
        return LinkStatus(name="verifying sink", direction="output", kind="sink", runs=runs)

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()
