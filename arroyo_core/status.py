"""Typed status records: what a service reports of its links, queue, operator and runs.

::

    ServiceStatus                   Runtime.status(), one per service
    ├── input: LinkStatus           its input link, or the source plug-in
    │   ├── senders: {src: SenderStatus}   what arrived of each sender's sequence
    │   ├── run_ledger: [RunLedgerStatus]  which of each run's frame numbers arrived
    │   └── lag: LagStatus | None          if the link watches its lag
    ├── queue: QueueStatus          between receiving and processing
    ├── operator: OperatorStatus
    │   └── seconds: HistogramStatus | None  processing time, if the runtime times it
    └── outputs: [LinkStatus]       its output links, or sink plug-ins
        ├── run_ledger: [RunLedgerStatus]  which of each run's frames it sent on
        └── runs: [RunStatus] | None       what a sink counted of each run, end to end

The runtime makes them from its parts and never from what a reader guesses. The status
server sends their dict form (:meth:`ServiceStatus.to_dict`: plain msgpack- and
JSON-safe data, each field by name, nested records as dicts) and every reader turns it
back into records with :meth:`ServiceStatus.from_dict`.

A link's ``transport`` mapping (connections, peers, subscribers, budget, Redis outages:
what only its transport has) sits beside its fields in the dict form, as it always has
on the wire (and its ``name`` is ``link`` there); :meth:`LinkStatus.from_dict` takes each
key that names a field and holds a value of the field's type as that field, and keeps
every other key in ``transport``. So a plug-in that only reports a plain ``stats()`` dict
gets a record by the same rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

STATUS_VERSION = 1  # of the dict form; a reader can tell an older or newer service by it


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_counts(value: Any) -> bool:
    """A mapping of reason to count, such as ``malformed`` or ``dropped``."""
    return isinstance(value, dict) and all(isinstance(k, str) and _is_int(n)
                                           for k, n in value.items())


def _fits(cls: Any, data: Any) -> bool:
    """Whether ``data`` can be read as a ``cls`` record: a dict with every field that has
    no default (keys that are not fields, from a newer service, are left out)."""
    if not isinstance(data, dict):
        return False
    return all(f.name in data for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


class Record:
    """A status record: ``to_dict`` gives its fields as plain data, ``from_dict`` reads
    them back (leaving out keys that are not fields, which a newer service may add)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{key: value for key, value in data.items() if key in names})


@dataclass
class SenderStatus(Record):
    """What an input link received of one sender's sequence numbers (``seq``)."""

    received: int
    first_seq: int  # > 0: the link joined this sender late (or the sender restarted)
    next_seq: int
    missing: int
    missing_ranges: list[list[int]]  # [first, last] of each gap, the first 32; count exact
    duplicates: int


@dataclass
class LagStatus(Record):
    """How far an input link is behind its sender (seconds, from the headers' send time)."""

    lag: float  # of the last message
    max_lag: float
    late: int  # messages that came later than max_lag
    worst_lag: float


@dataclass
class RunStatus(Record):
    """What a sink counted of one run, from the frame index the source stamps."""

    run: Any  # the run id (the source's ``run``); None for frames outside a known run
    frames: int  # events received (duplicates included)
    bytes: int  # of their payloads
    frames_sent: int | None  # the source's count from the run's Stop; None before it
    lost: int
    duplicates: int
    missing_ranges: list[list[int]]
    seconds: float
    frames_per_s: float
    mb_per_s: float
    complete: bool  # the run's Stop has arrived
    corrupt: int | None = None  # failed their crc32 (only a verifying sink checks)
    filtered: int = 0  # from the Stop: events operators returned no event for
    failed: int = 0  # from the Stop: events operators raised on
    policy_dropped: int = 0  # from the Stop: events overflow policies dropped
    joined_at: int | None = None  # the first frame seen, when the sink joined mid-run
    cut_short: bool = False  # the Stop says the source ended the run early (``aborted``)
    rate_from: str = "start"  # "start": rates from the run's Start as sent (its
    # ``started``) or as received; "first frame": joined mid-run, so a backlog inflates them
    crc_checked: int | None = None


@dataclass
class RunLedgerStatus(Record):
    """Which of one run's frame numbers a link saw (:mod:`arroyo_core.run_ledger`): an
    input counts what arrived, an output what it handed on to its transport."""

    run: Any  # the run id (the source's ``run``); None for frames without one
    seen: int  # distinct frame numbers (an output: sent)
    first: int | None  # the first frame number seen (None: none yet)
    next: int | None  # one past the highest frame number seen
    expected: int | None  # frames_sent from the run's Stop; None before it
    # Frame numbers not seen: from 0 (from ``first`` when the link joined the run midway,
    # ``started`` false) up to ``expected``, or up to ``next`` before the Stop.
    missing: int
    missing_ranges: list[list[int]]  # [first, last] of each, the first 32; count exact
    duplicates: int  # seen again (or came late, past the ranges kept)
    late: int  # came after a later frame, and filled their gap
    dropped: int = 0  # an output's: frames it dropped itself (by its overflow policy)
    senders: int = 0  # an input's: sender ids the run arrived under (one per restart)
    started: bool = False  # the run's Start passed this link: counted from frame 0
    complete: bool = False  # the run's Stop passed this link
    # From the run's Stop, summed over the hops before (an output: and this one): events
    # operators returned no event for, raised on, and overflow policies dropped. Missing
    # here, but not lost (arroyo_core.run_ledger.ACCOUNTED).
    filtered: int = 0
    failed: int = 0
    policy_dropped: int = 0
    cut_short: bool = False  # the Stop says the source ended the run early (``aborted``)
    share: bool = False  # a pool's worker: ``expected`` is its share of the run, not all

    @property
    def lost(self) -> int | None:
        """Frames of the run missing here that no hop accounts for (filtered, failed or
        dropped by policy): known once the Stop came (None before)."""
        if not (self.complete and self.started):
            return None
        return max(0, self.missing - self.filtered - self.failed - self.policy_dropped)


@dataclass
class LinkStatus(Record):
    """One link of a service (or the source or sink plug-in in a link's place).

    ``received``/``sent`` are None where the part does not do that (an output receives
    nothing). ``transport`` holds what only its transport has (for a plug-in, whatever
    else its ``stats()`` reports).
    """

    name: str  # as the logs show it: "input pull >tcp://host:5555"
    direction: str  # "input" or "output"
    kind: str = "link"  # "link", or "source"/"sink": a plug-in that makes or ends the stream
    address: str = ""  # "@tcp://*:5555", a password hidden; "" for a plug-in
    bound: str | None = None  # where a binding end listens: "tcp://0.0.0.0:5555"
    scheme: str = ""  # of the address, which picks the transport
    pattern: str | None = None  # "push", "pub", "pull", "sub" ... if the transport has them
    received: int | None = None
    sent: int | None = None
    bytes: int | None = None  # wire bytes of what was received or sent (None: not counted)
    missing: int = 0
    duplicates: int = 0
    malformed: dict[str, int] = field(default_factory=dict)  # by reason
    dropped: dict[str, int] = field(default_factory=dict)  # by reason
    senders: dict[str, SenderStatus] = field(default_factory=dict)
    src: str | None = None  # an output's sender id: the inputs it reaches list it in senders
    next_seq: int | None = None  # an output's next sequence number
    batches: int | None = None  # an output's batches sent (docs/protocol.md section 9)
    batched: int | None = None  # Events of those batches (counted in sent too)
    lag: LagStatus | None = None
    unhandled: int | None = None  # delivered, not yet acknowledged (acknowledging inputs)
    runs: list[RunStatus] | None = None  # a sink that counts runs
    run_ledger: list[RunLedgerStatus] | None = None  # a link's, per run
    transport: dict[str, Any] = field(default_factory=dict)

    def with_transport(self, status: dict[str, Any]) -> Self:
        """This record with what a transport's ``status()`` reported: its ``pattern`` is
        the field, and a key that is another field's name is kept as ``transport <key>``."""
        details = dict(status)
        pattern = details.pop("pattern", None)
        for key in details.keys() & {"link", *_FIELD_TYPES}:
            details[f"transport {key}"] = details.pop(key)
        return dataclasses.replace(self, pattern=pattern, transport=details)

    @property
    def fans_out(self) -> bool:
        """Every receiver gets every message (on ``pub``), rather than a share of them."""
        return self.pattern == "pub"

    def to_dict(self) -> dict[str, Any]:
        """The fields by name, but ``name`` as ``link`` (as the ledgers always had it), and
        the transport's keys beside them."""
        data = dataclasses.asdict(self)
        data = {"link": data.pop("name"), **data}
        del data["transport"]
        # The transport's keys last: one under a field's name is a value that did not fit
        # the field (a plug-in's own "runs", say), the field then at its default.
        data.update(self.transport)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        rest = dict(data)
        name = rest.pop("link") if isinstance(rest.get("link"), str) else ""
        found: dict[str, Any] = {}
        for key, fits in _FIELD_TYPES.items():
            if key in rest and fits(rest[key]):
                found[key] = rest.pop(key)
        senders = found.get("senders", {})
        found["senders"] = {src: SenderStatus.from_dict(s) for src, s in senders.items()}
        if found.get("lag") is not None:
            found["lag"] = LagStatus.from_dict(found["lag"])
        if found.get("runs") is not None:
            found["runs"] = [RunStatus.from_dict(run) for run in found["runs"]]
        if found.get("run_ledger") is not None:
            found["run_ledger"] = [RunLedgerStatus.from_dict(run)
                                   for run in found["run_ledger"]]
        return cls(**{"direction": "", **found}, name=name, transport=rest)

    @classmethod
    def from_stats(cls, stats: dict[str, Any], direction: str, name: str) -> Self:
        """The record of a plug-in that reports a plain dict, read as :meth:`from_dict`
        reads (see the module docstring); ``name`` unless the dict names it (``link``)."""
        kind = "source" if direction == "input" else "sink"
        return cls.from_dict({"link": name, **stats, "direction": direction, "kind": kind})


Check = Callable[[Any], bool]


def _optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def _all_records(cls: Any) -> Check:
    return lambda value: isinstance(value, list) and all(_fits(cls, item) for item in value)


# How LinkStatus.from_dict tells a field from a transport's (or a plug-in's) own key.
_FIELD_TYPES: dict[str, Check] = {
    "direction": lambda value: value in ("input", "output"),
    "kind": lambda value: value in ("link", "source", "sink"),
    "address": lambda value: isinstance(value, str),
    "bound": _optional(lambda value: isinstance(value, str)),
    "scheme": lambda value: isinstance(value, str),
    "pattern": _optional(lambda value: isinstance(value, str)),
    "received": _optional(_is_int),
    "sent": _optional(_is_int),
    "bytes": _optional(_is_int),
    "missing": _is_int,
    "duplicates": _is_int,
    "malformed": _is_counts,
    "dropped": _is_counts,
    "senders": lambda value: isinstance(value, dict) and all(
        isinstance(k, str) and _fits(SenderStatus, s) for k, s in value.items()),
    "src": _optional(lambda value: isinstance(value, str)),
    "next_seq": _optional(_is_int),
    "batches": _optional(_is_int),
    "batched": _optional(_is_int),
    "lag": _optional(lambda value: _fits(LagStatus, value)),
    "unhandled": _optional(_is_int),
    "runs": _optional(_all_records(RunStatus)),
    "run_ledger": _optional(_all_records(RunLedgerStatus)),
}
assert set(_FIELD_TYPES) == {f.name for f in dataclasses.fields(LinkStatus)} - {"name", "transport"}


@dataclass
class QueueStatus(Record):
    """The bounded queue between a service's receiving and processing."""

    name: str
    policy: str  # what a full queue does with a new event
    max_items: int
    max_bytes: int
    depth: int  # messages queued now
    bytes: int  # their payload bytes
    sent: int  # messages that went through it
    dropped: dict[str, int] = field(default_factory=dict)  # by its policy, by reason


@dataclass
class HistogramStatus(Record):
    """Durations counted per bucket: ``counts[i]`` are those up to ``bounds[i]`` seconds
    (and above ``bounds[i-1]``), the last those above every bound; not cumulative."""

    bounds: list[float]
    counts: list[int]
    sum: float

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass
class OperatorStatus(Record):
    """The operator of a service: messages processed, its failures by exception type, and
    the events it filtered (gave no event for) or failed on (raised)."""

    type: str
    processed: int
    errors: dict[str, int] = field(default_factory=dict)
    events_in: int = 0  # events given to the operator
    events_out: int = 0  # events it returned or published
    filtered: int = 0  # events for which it returned no event (None, [] or a Start/Stop)
    failed: int = 0  # events on which it raised
    seconds: HistogramStatus | None = None  # processing time per message, if timed

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        record = super().from_dict(data)
        if isinstance(record.seconds, dict):
            record.seconds = HistogramStatus.from_dict(record.seconds)
        return record


@dataclass
class ServiceStatus(Record):
    """One service: its input, queue, operator and outputs.

    ``name`` is given by whoever serves the record (the runtime does not know it);
    ``error`` says why a status server could not produce the rest.
    """

    name: str = ""
    uptime: float = 0.0  # seconds since the runtime was made
    ready: bool = False  # opened and running
    input: LinkStatus | None = None
    queue: QueueStatus | None = None
    operator: OperatorStatus | None = None
    outputs: list[LinkStatus] = field(default_factory=list)
    error: str | None = None
    version: int = STATUS_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "name": self.name, "uptime": self.uptime,
            "ready": self.ready, "error": self.error,
            "input": self.input.to_dict() if self.input is not None else None,
            "queue": self.queue.to_dict() if self.queue is not None else None,
            "operator": self.operator.to_dict() if self.operator is not None else None,
            "outputs": [output.to_dict() for output in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The record of a status reply (unknown keys, from a newer service, are left out)."""
        link = data.get("input")
        queue, operator = data.get("queue"), data.get("operator")
        return cls(
            name=str(data.get("name", "")), uptime=float(data.get("uptime", 0.0)),
            ready=bool(data.get("ready", False)), error=data.get("error"),
            version=int(data.get("version", STATUS_VERSION)),
            input=LinkStatus.from_dict(link) if link else None,
            queue=QueueStatus.from_dict(queue) if queue else None,
            operator=OperatorStatus.from_dict(operator) if operator else None,
            outputs=[LinkStatus.from_dict(output) for output in data.get("outputs") or []])
