"""Fan-in after a pool: the workers' runs joined back into one, in order if asked.

Every worker of a pool (:mod:`arroyo_core.dispatch`) gets each run's Start and Stop and
passes them on, so the stage after the pool receives N of each. Its input link joins them
here, before its run ledger counts anything:

- the first Start of a run goes on; the others (and the Start a worker that joined
  mid-run got) are absorbed;
- a worker's Stop carries ``pool`` (``stops``: how many workers got it, ``index``: which
  one this is); the run's Stop goes on once every one of them has come, as one Stop whose
  ``filtered``, ``failed`` and ``dropped`` are the sums over the workers (each counted once
  what they had in common when the pool got them, ``pool.accounted``), without ``pool``;
- a worker that died after the dispatcher sent it the Stop never sends it on: after
  ``stop_timeout`` seconds without any message, the Stop goes on with what came (logged,
  and counted as ``stops_timed_out``);
- with ``order``, Events are passed on in the order of their ``frame`` per run: one that
  comes early waits, at most ``order_window`` of them and at most ``order_timeout``
  seconds; past either, the gap is given up and the frames in it that still come are
  *late*: dropped and counted (``late``, and in the run's Stop as ``dropped``, so no
  ledger after it takes them for lost).

A pool's worker itself (``FrameReceiver.shares``) joins nothing: the Stop it gets is its
own share.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from .gaps import LateFilling
from .message import Message
from .run_ledger import ACCOUNTED, MAX_RUNS, accounted, run_key

log = logging.getLogger(__name__)

# (message, tag) to the rest of the link step; the tag is the link's (its sender id and
# token): what the fan-in absorbs, it hands back with ``drop(tag)``, to be acknowledged
PassOn = Callable[[Message, Any], None]


@dataclass
class _Run:
    """One run as the fan-in has it so far."""

    started: bool = False
    stops: dict[int, tuple[Message, Any]] = field(default_factory=dict)  # by worker index
    expected: int = 0  # Stops to wait for (0: none came yet)
    finished: bool = False
    last: float = field(default_factory=time.monotonic)  # when a message of it last came
    # ordering only:
    next: int | None = None  # the frame number to pass on next
    held: list[tuple[int, int, Message, Any]] = field(default_factory=list)  # a heap
    held_since: float = 0.0  # when the oldest frame held began to wait
    passed: LateFilling = field(default_factory=lambda: LateFilling(start=None,
                                                                     max_ranges=1024))
    late: int = 0


class FanIn:
    """Joins Starts and Stops of a pool's workers (and orders Events, with ``order``).

    Parameters
    ----------
    link
        The link's name, for log lines.
    joins
        Join the workers' Starts and Stops (false on a pool's own worker).
    order, order_window, order_timeout
        Pass Events on in frame order, holding at most ``order_window`` Events, each at
        most ``order_timeout`` seconds.
    stop_timeout
        Seconds without any message after which a run's Stop goes on without the
        Stops still missing (a worker died holding it).
    """

    def __init__(self, link: str, joins: bool = True, order: bool = False,
                 order_window: int = 256, order_timeout: float = 1.0,
                 stop_timeout: float = 10.0) -> None:
        self.link = link
        self.joins = joins
        self.order = bool(order)
        self.window = max(1, int(order_window))
        self.order_timeout = float(order_timeout)
        self.stop_timeout = float(stop_timeout)
        self.runs: dict[Any, _Run] = {}
        self.late = 0  # Events that came after their gap was given up (dropped)
        self.duplicates = 0  # Events of a frame already passed on (ordering only; dropped)
        self.reordered = 0  # Events held back until the ones before them came
        self.gaps_given_up = 0
        self.starts_absorbed = 0
        self.stops_joined = 0
        self.stops_timed_out = 0
        # Held while anything is passed on: by take(), by the timer that gives up on
        # waits, and by the link around the Events it passes on itself (re-entrant: it
        # may call take() inside).
        self.lock = threading.RLock()
        self._pass_on: PassOn | None = None
        self._drop: Callable[[Any], None] = _ignore
        self._count = 0  # tie-breaker in the heaps
        self._ticker: threading.Thread | None = None
        self._halt = threading.Event()
        self._last_any = time.monotonic()  # when any message last came

    @property
    def active(self) -> bool:
        """Whether every message must come through :meth:`take` (else only Starts and Stops)."""
        return self.order

    def heard(self) -> None:
        """A message came (an Event that did not go through :meth:`take`, among them): a
        worker still sending holds its Stop back, so a run's Stop is not given up on."""
        self._last_any = time.monotonic()

    def start(self, pass_on: PassOn, drop: Callable[[Any], None] = lambda tag: None) -> None:
        """Begin: ``pass_on`` gets what goes on and ``drop`` the tag of what does not; a
        thread gives up on waits that expire."""
        self._pass_on, self._drop = pass_on, drop
        self._halt.clear()
        self._ticker = threading.Thread(target=self._tick, daemon=True, name="arroyo-fan-in")
        self._ticker.start()

    def finish(self) -> None:
        """End: what is held goes on (frames in order, Stops with what came)."""
        self._halt.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None
        with self.lock:
            for key, run in list(self.runs.items()):
                self._release(run, everything=True)
                if run.stops and not run.finished:
                    self._finish(key, run, timed_out=True)

    def take(self, message: Message, src: Any) -> None:
        """One message from the link (after its sequence ledger), from the receiving thread."""
        with self.lock:
            self._last_any = time.monotonic()  # a worker still sending holds its Stop back
            kind = message.kind
            meta = message.meta
            if kind == "event":
                self._event(message, src)
                return
            pool = meta.get("pool") if self.joins else None
            run = self._run(meta.get("run"))
            if not isinstance(pool, dict):
                if kind == "stop":
                    self._release(run, everything=True)
                    run.finished = True
                    if run.late:  # dropped here by policy: said in the Stop, not lost
                        dropped = accounted(meta)[2] + run.late
                        message = type(message)(meta={**meta, "dropped": dropped})
                else:
                    run.started = True
                self._send(message, src)
                return
            run.last = time.monotonic()
            if kind == "start":
                if run.started:
                    self.starts_absorbed += 1
                    self._drop(src)
                    return
                run.started = True
                self._send(_without_pool(message), src)
                return
            stops, index = pool.get("stops"), pool.get("index")
            if not (_is_int(stops) and _is_int(index)) or run.finished:
                self._send(_without_pool(message), src)  # not a pool's Stop after all
                return
            run.expected = max(run.expected, stops)
            if index in run.stops:
                self._drop(run.stops[index][1])
            run.stops[index] = (message, src)
            if len(run.stops) >= run.expected:
                self._finish(meta.get("run"), run, timed_out=False)

    def _run(self, run_id: Any) -> _Run:
        key = run_key(run_id)
        run = self.runs.get(key)
        if run is None:
            if len(self.runs) >= MAX_RUNS:
                finished = [k for k, r in self.runs.items() if r.finished]
                del self.runs[finished[0] if finished else next(iter(self.runs))]
            run = self.runs[key] = _Run()
        return run

    def _send(self, message: Message, src: Any) -> None:
        assert self._pass_on is not None, "take() before start()"
        self._pass_on(message, src)

    def _finish(self, run_id: Any, run: _Run, timed_out: bool) -> None:
        """Pass the run's Stop on: one, from every worker's."""
        run.finished = True
        self._release(run, everything=True)
        stops = [run.stops[i][0] for i in sorted(run.stops)]
        tags = [run.stops[i][1] for i in sorted(run.stops)]
        for tag in tags[:-1]:
            self._drop(tag)
        first = stops[0]
        pool = first.meta["pool"]
        base = pool.get("accounted")
        base = base if isinstance(base, list) and len(base) == len(ACCOUNTED) else [0, 0, 0]
        meta = {key: value for key, value in first.meta.items() if key != "pool"}
        totals = [sum(accounted(stop.meta)[i] - _int(base[i]) for stop in stops) + _int(base[i])
                  for i in range(len(ACCOUNTED))]
        totals[2] += run.late  # frames this fan-in dropped as too late
        for key, total in zip(ACCOUNTED, totals, strict=True):
            if total > 0:
                meta[key] = total
            else:
                meta.pop(key, None)
        if timed_out:
            self.stops_timed_out += 1
            log.warning("%s: run %s: %d of %d workers' Stops came within %.1f s; passing the "
                        "Stop on without the others (their unfinished frames count as lost)",
                        self.link, str(run_id)[:12], len(stops), run.expected,
                        self.stop_timeout)
        self.stops_joined += 1
        run.stops.clear()
        self._send(type(first)(meta=meta), tags[-1])

    # --- ordering ---------------------------------------------------------------------

    def _event(self, event: Message, src: Any) -> None:
        frame = event.meta.get("frame")
        if not self.order or frame.__class__ is not int:
            self._send(event, src)
            return
        run = self._run(event.meta.get("run"))
        run.last = time.monotonic()
        if run.next is None:
            run.next = 0 if run.started else frame
        if frame == run.next:
            self._pass(run, frame, event, src)
            self._release(run)
        elif frame > run.next:
            if not run.held:
                run.held_since = run.last
            self._count += 1
            heapq.heappush(run.held, (frame, self._count, event, src))
            self.reordered += 1
            if len(run.held) > self.window:
                self._give_up(run)
        else:
            self._too_late(run, frame, src)

    def _pass(self, run: _Run, frame: int, event: Message, src: Any) -> None:
        run.passed.observe(frame)
        run.next = frame + 1
        self._send(event, src)

    def _too_late(self, run: _Run, frame: int, src: Any) -> None:
        self._drop(src)
        if run.passed.earlier(frame) != 0:  # not in a gap given up: passed on before
            self.duplicates += 1
            return
        run.late += 1
        self.late += 1
        if self.late == 1:
            log.warning("%s: frame %d came after the ordering window gave up on it; "
                        "dropped, and further late frames are only counted", self.link, frame)

    def _give_up(self, run: _Run) -> None:
        """Skip the gap before the first frame held: it may still come, but too late."""
        frame, _, event, src = heapq.heappop(run.held)
        self.gaps_given_up += 1
        self._pass(run, frame, event, src)
        self._release(run)

    def _release(self, run: _Run, everything: bool = False) -> None:
        """Pass on the held frames that are next (all of them, ``everything``)."""
        held = run.held
        while held and (everything or held[0][0] <= (run.next or 0)):
            frame, _, event, src = heapq.heappop(held)
            if run.next is not None and frame < run.next:
                self._too_late(run, frame, src)  # a duplicate of one held
                continue
            if run.next is not None and frame > run.next:
                self.gaps_given_up += 1
            self._pass(run, frame, event, src)
        if held:
            run.held_since = time.monotonic()

    def _tick(self) -> None:
        interval = min(0.25, self.order_timeout / 4) if self.order else 0.5
        while not self._halt.wait(interval):
            now = time.monotonic()
            with self.lock:
                for key, run in list(self.runs.items()):
                    if run.held and now - run.held_since >= self.order_timeout:
                        self._give_up(run)
                    idle = now - max(run.last, self._last_any)
                    if run.stops and not run.finished and idle >= self.stop_timeout:
                        self._finish(key, run, timed_out=True)

    def status(self) -> dict[str, Any]:
        """The fan-in's counters (for the link's status record)."""
        return {"order": self.order, "late": self.late, "reordered": self.reordered,
                "duplicates": self.duplicates,
                "gaps_given_up": self.gaps_given_up, "starts_absorbed": self.starts_absorbed,
                "stops_joined": self.stops_joined, "stops_timed_out": self.stops_timed_out}


def _ignore(tag: Any) -> None:
    pass


def _without_pool(message: Message) -> Message:
    return type(message)(meta={k: v for k, v in message.meta.items() if k != "pool"})


def _is_int(value: Any) -> TypeGuard[int]:
    return value.__class__ is int and value >= 0


def _int(value: Any) -> int:
    return value if _is_int(value) else 0
