"""What ``arroyo monitor`` shows of each stage, from successive status records: counts,
rates from the difference between two samples, and whether the service is up.

Pure logic, no sockets or terminal: :class:`StageTracker` is given each sample of one
service (its :class:`~arroyo_core.status.ServiceStatus`, or nothing when it did not
answer) and returns the :class:`StageRow` to show. A restart shows as an uptime that went
down; the rates then start again from the new counts, never from a difference across the
restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from arroyo_core.status import LinkStatus, ServiceStatus


@dataclass
class StageRow:
    """One line of the monitor: a service and its numbers (None: not known yet)."""

    service: str
    state: str  # "up", "not up yet", "no answer 4s", "restarted" ...
    received: int | None = None  # by its input link (None for a source)
    sent: int | None = None  # by its outputs, or taken by its sink
    rate: float | None = None  # messages/s, sent (or received, for a sink)
    mb_per_s: float | None = None  # where a byte count is reported
    queue_depth: int | None = None
    queue_max: int | None = None
    lag: float | None = None  # seconds, where the input watches its lag
    lost: int | None = None  # messages missing at its input, or frames lost in its runs
    dropped: int | None = None  # by overflow policies (queue and outputs)
    errors: int | None = None  # operator exceptions and malformed messages
    restarts: int = 0
    run: str | None = None  # the run id it last saw (its first 8 characters)
    frame: int | None = None  # one past the highest frame number of that run

    @property
    def queue_fill(self) -> float | None:
        if self.queue_depth is None or not self.queue_max:
            return None
        return self.queue_depth / self.queue_max


def _bytes(link: LinkStatus) -> int | None:
    """A link's byte count, where it reports one (a ``bytes`` key), or what its sink
    counted of its runs' payloads."""
    value = getattr(link, "bytes", None)  # a field, once links count their bytes
    if not isinstance(value, int):
        value = link.transport.get("bytes")
    if isinstance(value, int):
        return value
    if link.runs is not None:
        return sum(run.bytes for run in link.runs)
    return None


def counts(record: ServiceStatus) -> dict[str, int | None]:
    """The monotonic totals a rate is taken from, and the others shown as they are."""
    source = record.input
    received = source.received if source is not None else None
    taken: list[int] = []
    nbytes: list[int] = []
    for output in record.outputs:
        if output.runs is not None:  # a counting sink: the frames it took
            taken.append(sum(run.frames for run in output.runs))
        elif output.sent is not None:
            taken.append(output.sent)
        found = _bytes(output)
        if found is not None:
            nbytes.append(found)
    if source is not None and source.received is None and source.sent is not None:
        taken = taken or [source.sent]  # a source with no outputs listed
    sent = max(taken) if taken else None
    if not nbytes and source is not None:
        found = _bytes(source)
        nbytes = [found] if found is not None else []
    return {"received": received, "sent": sent, "bytes": max(nbytes) if nbytes else None}


def _lost(record: ServiceStatus) -> int:
    lost = record.input.missing if record.input is not None else 0
    for output in record.outputs:
        lost = max(lost, sum(run.lost for run in output.runs or []))
    if record.input is not None:
        lost = max(lost, sum(entry.lost or 0 for entry in record.input.run_ledger or []))
    return lost


def _dropped(record: ServiceStatus) -> int:
    dropped = sum(record.queue.dropped.values()) if record.queue is not None else 0
    return dropped + sum(sum(output.dropped.values()) for output in record.outputs)


def _errors(record: ServiceStatus) -> int:
    errors = sum(record.operator.errors.values()) if record.operator is not None else 0
    if record.input is not None:
        errors += sum(record.input.malformed.values())
    return errors


def _latest_run(record: ServiceStatus) -> tuple[str | None, int | None]:
    links = ([record.input] if record.input is not None else []) + list(record.outputs)
    for link in reversed(links):
        ledger = link.run_ledger or []
        if ledger:
            last = ledger[-1]
            return (None if last.run is None else str(last.run)[:8]), last.next
        if link.runs:
            run = link.runs[-1]
            return (None if run.run is None else str(run.run)[:8]), run.frames
    return None, None


class StageTracker:
    """One service's rows over time: rates from the sample before, restarts counted."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.restarts = 0
        self._last: tuple[float, ServiceStatus, dict[str, int | None]] | None = None
        self._silent_since: float | None = None
        self._rates: tuple[float | None, float | None] = (None, None)

    def update(self, now: float, record: ServiceStatus | None, error: str = "") -> StageRow:
        """The row for a sample taken at ``now`` (seconds, monotonic): ``record`` is the
        service's answer, or None with ``error`` saying why there was none."""
        if record is None:
            return self._silent(now)
        self._silent_since = None
        if record.name:
            self.name = record.name
        totals = counts(record)
        restarted = False
        if self._last is not None:
            then, before, previous = self._last
            if record.uptime < before.uptime:  # a new process answers at the same address
                self.restarts += 1
                restarted = True
                self._rates = (None, None)
            elif now > then:
                seconds = now - then
                self._rates = (_per_s(previous, totals, seconds),
                               _rate(previous.get("bytes"), totals.get("bytes"), seconds))
        self._last = (now, record, totals)
        if record.error is not None:
            state = f"error: {record.error}"
        elif not record.ready:
            state = "starting"
        else:
            state = "restarted" if restarted else "up"
        rate, bytes_rate = self._rates
        return self._row(record, totals, state, rate, bytes_rate)

    def _row(self, record: ServiceStatus, totals: dict[str, int | None], state: str,
             rate: float | None, bytes_rate: float | None) -> StageRow:
        run, frame = _latest_run(record)
        queue = record.queue
        lag = record.input.lag.lag if record.input is not None and record.input.lag else None
        return StageRow(
            service=self.name, state=state, received=totals["received"], sent=totals["sent"],
            rate=rate, mb_per_s=None if bytes_rate is None else bytes_rate / 1e6,
            queue_depth=queue.depth if queue else None,
            queue_max=queue.max_items if queue else None, lag=lag, lost=_lost(record),
            dropped=_dropped(record), errors=_errors(record), restarts=self.restarts,
            run=run, frame=frame)

    def _silent(self, now: float) -> StageRow:
        """A service that did not answer: not up yet, or its last numbers, marked."""
        if self._silent_since is None:
            self._silent_since = now
        self._rates = (None, None)
        if self._last is None:
            return StageRow(self.name, "not up yet", restarts=self.restarts)
        _, record, totals = self._last
        return self._row(record, totals, f"no answer {now - self._silent_since:.0f}s",
                         None, None)


def _rate(before: int | None, after: int | None, seconds: float) -> float | None:
    if before is None or after is None:
        return None
    return max(0, after - before) / seconds


def _per_s(before: dict[str, int | None], after: dict[str, int | None],
           seconds: float) -> float | None:
    """Messages/s: of what the stage sent on (or took, a sink), else of what it received."""
    sent = _rate(before.get("sent"), after.get("sent"), seconds)
    return sent if sent is not None else _rate(before.get("received"), after.get("received"),
                                               seconds)
