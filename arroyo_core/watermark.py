"""Watermarks: how far a publisher is done with what it was handed, for a reliable input
that may acknowledge a message only once everything made of it is done (docs/reliability.md
section 6).

A publisher whose work on a message goes on after :meth:`~arroyo_core.components.Publisher.publish`
returned sets its ``watermark``: of the messages handed to it (:meth:`Watermark.produced`),
how many are done (:meth:`Watermark.settled`). A reliable output is done once its receiver
acknowledged; a file writer once the rows are flushed (:class:`FlushWatermark`). The
runtime's reliable input notes each publisher's ``produced()`` when it has handled a
message and acknowledges the message once every watermark has reached that count; the
watermark calls ``on_settled`` (set by that input) when ``settled()`` grew.

A publisher without a watermark is done with a message when ``publish`` returns.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

# A writer that acknowledgements wait on flushes once its input has been idle this long:
# a reliable sender whose window is full sends nothing until acknowledged, so a writer
# waiting for flush_frames rows (or flush_seconds) would hold it up.
IDLE_FLUSH_S = 0.005


class Watermark(ABC):
    """Counts of what a publisher was handed and of what of it is done.

    ``on_settled``: set by whoever waits on the watermark; called, from any thread, after
    :meth:`settled` grew.
    """

    on_settled: Callable[[], None] | None = None

    @abstractmethod
    def produced(self) -> int:
        """Messages handed to the publisher so far."""

    @abstractmethod
    def settled(self) -> int:
        """Of :meth:`produced`, how many are done (the first ones: in order)."""


class FlushWatermark(Watermark):
    """The watermark of a writer that makes rows durable by flushing its file: every
    message :meth:`took` is done at the writer's next flush.

    It also decides when to flush: after ``flush_frames`` rows (:meth:`wrote`),
    ``flush_seconds`` after the first unflushed message (from a thread of its own, so a
    stalled stream is flushed too) and, while a reliable input waits on it, once the
    input is idle (:meth:`idle`, then :data:`IDLE_FLUSH_S`), so acknowledgements are
    never held by a writer waiting for rows that a full window will not send. The writer
    holds :attr:`lock` while it writes; ``flush`` is called with it held.

    Parameters
    ----------
    flush
        The writer's flush (to the operating system: survives ``kill -9``).
    flush_frames, flush_seconds
        See above; 0 turns either off.
    name
        Of the flushing thread.
    """

    def __init__(self, flush: Callable[[], None], flush_frames: int, flush_seconds: float,
                 name: str) -> None:
        self.lock = threading.Condition()
        self._flush = flush
        self.flush_frames, self.flush_seconds = int(flush_frames), float(flush_seconds)
        self.name = name
        self.taken = 0  # messages handed to publish
        self.durable = 0  # of them, flushed
        self.unflushed = 0  # rows written since the last flush
        self._dirty_since: float | None = None  # when the first unflushed message came
        self._idle_since: float | None = None  # the input is idle, with messages unflushed
        self._thread: threading.Thread | None = None
        self._closing = False

    def produced(self) -> int:
        return self.taken

    def settled(self) -> int:
        return self.durable

    def start(self) -> None:
        """Start the flushing thread (the writer's ``open``)."""
        self._closing = False
        self._thread = threading.Thread(target=self._flush_in_time, daemon=True,
                                        name=self.name)
        self._thread.start()

    def took(self) -> None:
        """A message was handed to ``publish`` (call with :attr:`lock` held)."""
        self.taken += 1
        self._idle_since = None
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()
            self.lock.notify()

    def wrote(self, rows: int = 1) -> None:
        """``rows`` more rows are written (lock held): flush once there are flush_frames."""
        self.unflushed += rows
        if self.flush_frames and self.unflushed >= self.flush_frames:
            self.flush()

    def flush(self) -> None:
        """Flush now (lock held): everything taken is done."""
        self._flush()
        self.unflushed = 0
        self._dirty_since = self._idle_since = None
        if self.durable != self.taken:
            self.durable = self.taken
            if self.on_settled is not None:
                self.on_settled()

    def idle(self) -> None:
        """The writer's input has nothing more for now (the runtime's ``flush``)."""
        if self.on_settled is None or self.durable == self.taken:
            return  # nobody waits on it, or nothing to flush
        with self.lock:
            if self._idle_since is None and self.durable != self.taken:
                self._idle_since = time.monotonic()
                self.lock.notify()

    def stop(self) -> None:
        """Stop the flushing thread (the writer's ``close``, after its last flush)."""
        with self.lock:
            self._closing = True
            self.lock.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _flush_in_time(self) -> None:
        with self.lock:
            while not self._closing:
                due = []
                if self._dirty_since is not None and self.flush_seconds:
                    due.append(self._dirty_since + self.flush_seconds)
                if self._idle_since is not None:
                    due.append(self._idle_since + IDLE_FLUSH_S)
                if not due:
                    self.lock.wait()
                    continue
                delay = min(due) - time.monotonic()
                if delay > 0:
                    self.lock.wait(delay)
                else:
                    self.flush()
