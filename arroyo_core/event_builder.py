"""Event building: the parts of one trigger, from several streams, joined into one Event.

A scan produces several streams at once (an area detector's frames, a fluorescence
detector's spectra, encoder positions). :class:`EventBuilder` is the pure logic that joins
them; :mod:`arroyo_core.event_input` runs it behind several named input links. Parts are
joined by a key: the ``frame`` number by default, or any metadata key (``key =
"trigger"``). The built Event holds each part's arrays as ``STREAM/NAME`` (``detector/
image``), each part's metadata under ``meta["parts"][STREAM]``, and says which streams it
lacks (``missing``) when it is incomplete.

- **Per-event and per-run streams.** A per-event stream (the default) sends one part per
  event; a per-run stream (``per_run``: one metadata record per scan) is not waited for:
  its latest part goes into every event built after it came.
- **Bounded.** At most ``window`` events and ``window_bytes`` of parts are held; past
  either, the oldest is given up. An event also waits at most ``timeout`` seconds for a
  stream that sends nothing. With ``in_order`` (the default, for integer keys), a stream that sent a
  part with a higher key has skipped this one: the event is given up at once.
- **Incomplete events** are emitted (``incomplete = "emit"``) or dropped (``"drop"``);
  either way each missing stream is counted (``incomplete`` per stream), and a dropped
  event is added to the run Stop's ``dropped``, so no ledger after the builder counts it
  lost. A part that comes after its event was given up is *late*: dropped and counted.
- **Start and Stop are joined.** The run's Start goes on once every stream has started
  (or ``timeout`` after the first did); its Stop once every stream has stopped, or after
  ``stop_timeout`` seconds without any part since the first Stop. The Stop says what was
  built: ``events``, ``complete``, ``incomplete`` (per stream), ``late`` (per stream) and
  ``frames_sent`` (the highest per-event ``frames_sent``, with the default key).

Runs follow one another: the builder holds one open run, which every stream's Start
joins (the built run's id is the first Start's ``run``). Not thread-safe: its caller
serialises :meth:`add` and :meth:`expire`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .budget import parse_bytes
from .errors import ConfigError
from .message import Event, Message, Start, Stop

log = logging.getLogger(__name__)

INCOMPLETE = ("emit", "drop")
REMEMBERED = 65536  # keys of given-up events remembered per run, to tell late parts


@dataclass
class _Pending:
    """One event being built: its parts so far, by stream."""

    parts: dict[str, Event] = field(default_factory=dict)
    since: float = 0.0
    nbytes: int = 0


@dataclass
class _Run:
    """The run the builder has open."""

    run: Any = None
    starts: dict[str, Message] = field(default_factory=dict)
    stops: dict[str, Message] = field(default_factory=dict)
    first_start: float = 0.0
    first_stop: float = 0.0
    start_sent: bool = False
    pending: OrderedDict[Any, _Pending] = field(default_factory=OrderedDict)
    nbytes: int = 0
    ready: list[Message] = field(default_factory=list)  # built before the Start went on
    latest: dict[str, Any] = field(default_factory=dict)  # a stream's highest key so far
    per_run: dict[str, Event] = field(default_factory=dict)  # a per-run stream's latest
    done: deque[Any] = field(default_factory=deque)  # keys built or given up, in order
    done_set: set[Any] = field(default_factory=set)
    serial: int = 0  # events built (their frame number when the key is not "frame")
    complete: int = 0
    dropped: int = 0
    incomplete: dict[str, int] = field(default_factory=dict)
    late: dict[str, int] = field(default_factory=dict)


class EventBuilder:
    """Joins parts from named streams into Events (see the module docstring).

    Parameters
    ----------
    streams
        The names of the streams, in the order their arrays go into an Event.
    key
        The metadata key parts are joined by (``frame``: the source's frame number).
    per_run
        Streams that send one part per run rather than per event.
    window, window_bytes
        Events, and bytes of parts (a size such as ``"1GiB"``), held at most before the
        oldest is given up.
    timeout
        Seconds an event waits for a stream's part after its first part came, while that
        stream sends nothing (one that goes on sending, behind the others, is waited for
        within the window); and the run's Start for every stream's after the first.
    stop_timeout
        Seconds without any part, after a stream's Stop, before the run's Stop goes on
        without the streams that did not stop.
    incomplete
        ``emit`` an event that lacks parts (saying which in ``missing``), or ``drop`` it;
        counted per stream either way.
    in_order
        Each stream sends integer keys in increasing order, so a part with a higher key
        means the stream skipped the lower ones (they are given up at once).
    """

    def __init__(self, streams: Iterable[str], key: str = "frame", per_run: Iterable[str] = (),
                 window: int = 1024, window_bytes: int | str = 2**30, timeout: float = 2.0,
                 stop_timeout: float = 10.0, incomplete: str = "emit",
                 in_order: bool = True) -> None:
        self.streams = list(streams)
        self.per_run = set(per_run)
        if len(self.streams) < 1 or len(set(self.streams)) != len(self.streams):
            raise ConfigError(f"event builder: streams must be distinct names, got "
                              f"{self.streams}")
        unknown = self.per_run - set(self.streams)
        if unknown:
            raise ConfigError(f"event builder: per_run names {sorted(unknown)}, which are not "
                              f"streams ({', '.join(self.streams)})")
        self.per_event = [name for name in self.streams if name not in self.per_run]
        if not self.per_event:
            raise ConfigError("event builder: every stream is per_run; at least one must "
                              "send a part per event")
        if incomplete not in INCOMPLETE:
            raise ConfigError(f"event builder: incomplete must be one of "
                              f"{', '.join(INCOMPLETE)}, got {incomplete!r}")
        if int(window) < 1 or float(timeout) <= 0:
            raise ConfigError("event builder: window must be 1 or more and timeout above 0")
        self.key = key
        self.window = int(window)
        self.window_bytes = parse_bytes(window_bytes, "window_bytes")
        self.timeout = float(timeout)
        self.stop_timeout = float(stop_timeout)
        self.emit_incomplete = incomplete == "emit"
        self.in_order = bool(in_order)
        self.current = _Run()
        self.last_part = time.monotonic()
        self.heard: dict[str, float] = {}  # when each stream's last part came
        # Totals over every run (the status record); per stream where it says so.
        self.parts = dict.fromkeys(self.streams, 0)
        self.incomplete = dict.fromkeys(self.streams, 0)
        self.late = dict.fromkeys(self.streams, 0)
        self.no_key = dict.fromkeys(self.streams, 0)
        self.built = 0
        self.complete = 0
        self.dropped = 0
        self.given_up = {"window": 0, "timeout": 0, "skipped": 0, "stop": 0}
        self.runs = 0

    # --- what comes in ----------------------------------------------------------------

    def add(self, stream: str, message: Message, now: float | None = None) -> list[Message]:
        """Take one message of ``stream``; returns what goes on now (in order)."""
        now = time.monotonic() if now is None else now
        run = self.current
        out: list[Message] = []
        kind = message.kind
        if kind == "start":
            if stream in run.starts:  # a new run while this one is open for the stream
                self._close(run, now, out, timed_out=True)
                run = self.current
            self._start(run, stream, message, now, out)
        elif kind == "stop":
            if stream not in run.starts:
                self._start(run, stream, Start({"run": message.meta.get("run")}), now, out)
            run.stops.setdefault(stream, message)
            if not run.first_stop:
                run.first_stop = now
            if stream in self.per_event:
                self._stream_ended(run, stream, now, out)
            if len(run.stops) == len(self.streams):
                self._close(run, now, out, timed_out=False)
        elif isinstance(message, Event):
            self.last_part = self.heard[stream] = now
            self.parts[stream] += 1
            if stream not in run.starts:  # joined mid-run: its Start was before our time
                self._start(run, stream, Start({"run": message.meta.get("run")}), now, out)
            if stream in self.per_run:
                run.per_run[stream] = message
            else:
                self._part(run, stream, message, now, out)
        return out

    def expire(self, now: float | None = None) -> list[Message]:
        """Give up on what waited too long; returns what goes on now."""
        now = time.monotonic() if now is None else now
        run = self.current
        out: list[Message] = []
        if run.starts and not run.start_sent and now - run.first_start >= self.timeout:
            missing = [name for name in self.streams if name not in run.starts]
            log.warning("event builder: run %s starts without the Start of %s (none within "
                        "%.1f s)", str(run.run)[:12], ", ".join(missing), self.timeout)
            self._send_start(run, out)
        expired = []
        for key, pending in run.pending.items():
            if now - pending.since < self.timeout:
                break  # (the ones after it began later)
            # A stream that goes on sending, behind the others, is waited for (within the
            # window): only one that sent nothing for `timeout` is given up on.
            heard = max((self.heard.get(name, 0.0) for name in self.per_event
                         if name not in pending.parts), default=0.0)
            if now - max(pending.since, heard) >= self.timeout:
                expired.append(key)
        for key in expired:
            self._give_up(run, key, "timeout", out)
        if run.stops and now - max(run.first_stop, self.last_part) >= self.stop_timeout:
            self._close(run, now, out, timed_out=True)
        return out

    def finish(self) -> list[Message]:
        """The input has ended: what is held goes on (and the Stop, if any stream stopped)."""
        run = self.current
        out: list[Message] = []
        if run.starts and not run.start_sent:
            self._send_start(run, out)
        if run.stops:
            self._close(run, time.monotonic(), out, timed_out=True)
        else:
            while run.pending:
                self._give_up(run, next(iter(run.pending)), "stop", out)
        return out

    # --- runs ---------------------------------------------------------------------------

    def _start(self, run: _Run, stream: str, start: Message, now: float,
               out: list[Message]) -> None:
        if not run.starts:
            run.run = start.meta.get("run")
            run.first_start = now
        run.starts[stream] = start
        if not run.start_sent and len(run.starts) == len(self.streams):
            self._send_start(run, out)

    def _send_start(self, run: _Run, out: list[Message]) -> None:
        run.start_sent = True
        meta: dict[str, Any] = {"run": run.run, "streams": list(self.streams),
                                "key": self.key,
                                "parts": {name: start.meta for name, start in
                                          run.starts.items()}}
        out.append(Start(meta))
        out.extend(run.ready)
        run.ready.clear()

    def _close(self, run: _Run, now: float, out: list[Message], timed_out: bool) -> None:
        """End the open run: what is pending is given up, then the joined Stop goes on."""
        if not run.start_sent:
            self._send_start(run, out)
        while run.pending:
            self._give_up(run, next(iter(run.pending)), "stop", out)
        if timed_out:
            missing = [name for name in self.streams if name not in run.stops]
            if missing:
                log.warning("event builder: run %s stops without the Stop of %s",
                            str(run.run)[:12], ", ".join(missing))
        meta: dict[str, Any] = {"run": run.run, "events": run.serial,
                                "complete": run.complete,
                                "incomplete": dict(run.incomplete), "late": dict(run.late),
                                "parts": {name: stop.meta for name, stop in run.stops.items()}}
        if self.key == "frame":
            sent = [n for name, stop in run.stops.items() if name in self.per_event
                    and (n := stop.meta.get("frames_sent")).__class__ is int]
            if sent:
                meta["frames_sent"] = max(sent)
        else:
            meta["frames_sent"] = run.serial
        if run.dropped:
            meta["dropped"] = run.dropped
        out.append(Stop(meta))
        self.runs += 1
        self.current = _Run()

    # --- events -------------------------------------------------------------------------

    def _part(self, run: _Run, stream: str, event: Event, now: float,
              out: list[Message]) -> None:
        key = event.meta.get(self.key)
        if key is None or not isinstance(key, Hashable):  # msgpack: lists, dicts
            self.no_key[stream] += 1
            if self.no_key[stream] == 1:
                log.warning("event builder: a part of %s has no usable %r; dropped, further "
                            "ones only counted", stream, self.key)
            return
        if key in run.done_set:
            self._late(run, stream, key)
            return
        pending = run.pending.get(key)
        if pending is None:
            pending = run.pending[key] = _Pending(since=now)
        elif stream in pending.parts:
            self._late(run, stream, key)  # a duplicate: the first one is kept
            return
        pending.parts[stream] = event
        size = event.nbytes
        pending.nbytes += size
        run.nbytes += size
        if self.in_order and key.__class__ is int:
            before = run.latest.get(stream)
            run.latest[stream] = key if before is None else max(before, key)
            self._skipped(run, stream, key, out)  # first: events go on in key order
        if len(pending.parts) == len(self.per_event):
            self._build(run, key, out)
        elif self.in_order and key.__class__ is int and all(
                run.latest.get(name, -1) > key for name in self.per_event
                if name not in pending.parts):
            self._give_up(run, key, "skipped", out)  # the streams it lacks have passed it
        while run.pending and (len(run.pending) > self.window
                               or run.nbytes > self.window_bytes):
            self._give_up(run, next(iter(run.pending)), "window", out)

    def _skipped(self, run: _Run, stream: str, key: int, out: list[Message]) -> None:
        """Events before ``key`` that ``stream`` has passed over without a part."""
        for other in [k for k, p in run.pending.items()
                      if k.__class__ is int and k < key and stream not in p.parts]:
            pending = run.pending[other]
            if all(run.latest.get(name, -1) > other for name in self.per_event
                   if name not in pending.parts):
                self._give_up(run, other, "skipped", out)

    def _stream_ended(self, run: _Run, stream: str, now: float, out: list[Message]) -> None:
        """A per-event stream stopped: events still waiting for it will not get its part."""
        for key in [k for k, p in run.pending.items() if stream not in p.parts]:
            pending = run.pending[key]
            if all(name in run.stops or name in pending.parts for name in self.per_event):
                self._give_up(run, key, "stop", out)

    def _give_up(self, run: _Run, key: Any, why: str, out: list[Message]) -> None:
        pending = run.pending[key]
        missing = [name for name in self.per_event if name not in pending.parts]
        for name in missing:
            run.incomplete[name] = run.incomplete.get(name, 0) + 1
            self.incomplete[name] += 1
        self.given_up[why] += 1
        if self.emit_incomplete:
            self._build(run, key, out, missing)
        else:
            self._forget(run, key)
            run.dropped += 1
            self.dropped += 1

    def _build(self, run: _Run, key: Any, out: list[Message],
               missing: list[str] | None = None) -> None:
        pending = self._forget(run, key)
        payload: dict[str, Any] = {}
        parts_meta: dict[str, Any] = {}
        for name in self.streams:
            part = pending.parts.get(name) or run.per_run.get(name)
            if part is None:
                continue
            parts_meta[name] = part.meta
            for array, value in part.payload.items():
                payload[f"{name}/{array}"] = value
        frame = key if self.key == "frame" and key.__class__ is int else run.serial
        meta: dict[str, Any] = {"run": run.run, "frame": frame, "parts": parts_meta}
        if self.key != "frame":
            meta[self.key] = key
        if missing:
            meta["missing"] = missing
        else:
            run.complete += 1
            self.complete += 1
        run.serial += 1
        self.built += 1
        event = Event(meta, payload)
        (out if run.start_sent else run.ready).append(event)

    def _forget(self, run: _Run, key: Any) -> _Pending:
        pending = run.pending.pop(key)
        run.nbytes -= pending.nbytes
        run.done.append(key)
        run.done_set.add(key)
        if len(run.done) > REMEMBERED:
            run.done_set.discard(run.done.popleft())
        return pending

    def _late(self, run: _Run, stream: str, key: Any) -> None:
        run.late[stream] = run.late.get(stream, 0) + 1
        self.late[stream] += 1
        if self.late[stream] == 1:
            log.warning("event builder: a part of %s for %s=%r came after its event was "
                        "built or given up; dropped, further late parts only counted",
                        stream, self.key, key)

    def status(self) -> dict[str, Any]:
        """Counters, per stream where they are (plain data, for the status record)."""
        return {"streams": {name: {"parts": self.parts[name],
                                   "incomplete": self.incomplete[name],
                                   "late": self.late[name], "no_key": self.no_key[name],
                                   "per": "run" if name in self.per_run else "event"}
                            for name in self.streams},
                "built": self.built, "complete": self.complete, "dropped": self.dropped,
                "given_up": dict(self.given_up), "held": len(self.current.pending),
                "held_bytes": self.current.nbytes, "runs": self.runs, "key": self.key}
