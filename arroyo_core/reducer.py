"""A reducer: the stage after a pool that gathers every worker's results into one.

A pool's workers each see a share of a run; sums, maps and histograms over the whole run
are made after them. A :class:`Reducer` is an operator for the service after the pool
(whose input, bound, joins the workers' Starts and Stops: docs/pools.md), so it receives
every worker's results; with ``in_options = { order = true }`` it gets them in frame
order. It publishes what it has accumulated every ``every`` events and/or every
``interval`` seconds (checked as results arrive), and once more at the run's Stop.

A published result is an Event of the run, ``meta``: ``run``, ``frame`` (the highest
frame accumulated so far, so the ledgers after it count results, not lost frames: the
events it folded in count as *filtered* by this stage), ``reduced`` (events accumulated)
and ``final`` (true for the one published at Stop), plus what :meth:`Reducer.meta` adds;
payload: what :meth:`Reducer.result` returns.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

from .components import Operator, Results
from .errors import ConfigError
from .message import Event, Payload, Start, Stop


class Reducer(Operator, ABC):
    """Accumulate every result of a run; publish the accumulation periodically and at Stop.

    Subclasses implement :meth:`reset`, :meth:`accumulate` and :meth:`result`; call
    ``super().__init__(every=..., interval=...)`` with their own options.

    Parameters
    ----------
    every
        Publish after this many events (0: not by count).
    interval
        Publish when this many seconds passed since the last publication (0: not by
        time); checked as events arrive.
    """

    def __init__(self, every: int = 0, interval: float = 0.0) -> None:
        super().__init__()
        if every < 0 or interval < 0:
            raise ConfigError("options every and interval: expected 0 (off) or more")
        self.every = int(every)
        self.interval = float(interval)
        self.run: Any = None
        self.reduced = 0  # events accumulated this run
        self.published = 0  # results published this run
        self.highest: int | None = None  # frame of the highest event accumulated
        self._since = 0  # events since the last publication
        self._last = time.monotonic()

    @abstractmethod
    def reset(self) -> None:
        """Forget the previous run's accumulation (called at each Start)."""

    @abstractmethod
    def accumulate(self, event: Event) -> None:
        """Fold one worker's result into the accumulation."""

    @abstractmethod
    def result(self) -> dict[str, Payload]:
        """The accumulation as arrays to publish (copies: they are sent while more come)."""

    def meta(self) -> dict[str, Any]:
        """More metadata for each published result (default: none)."""
        return {}

    def on_start(self, start: Start) -> Results:
        self.run = start.meta.get("run")
        self.reduced = self.published = self._since = 0
        self.highest = None
        self._last = time.monotonic()
        self.reset()
        return start

    def on_event(self, event: Event) -> Results:
        self.accumulate(event)
        self.reduced += 1
        self._since += 1
        frame = event.meta.get("frame")
        if frame.__class__ is int and (self.highest is None or frame > self.highest):
            self.highest = frame
        now = time.monotonic()
        if (self.every and self._since >= self.every) or (
                self.interval and now - self._last >= self.interval):
            return self._publish(final=False)
        return None

    def on_stop(self, stop: Stop) -> Results:
        summary = {"reduced": self.reduced, "results": self.published + 1}
        return [self._publish(final=True), Stop({**stop.meta, "reducer": summary})]

    def _publish(self, final: bool) -> Event:
        self._since = 0
        self._last = time.monotonic()
        self.published += 1
        meta = {"run": self.run, "reduced": self.reduced, "final": final, **self.meta()}
        if self.highest is not None:
            meta["frame"] = self.highest
        return Event(meta, self.result())
