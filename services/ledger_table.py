"""The status records of every service of a chain as one table, so a user sees which hop
lost what.

One row per link of each service (input, queue, outputs), then one line per hop (an
output matched to the inputs that received from it, by the sender id in the records),
then each run as every link saw it (the run ledgers: frame numbers seen, from the source's
``frame`` and ``frames_sent``), ending in its end-to-end line: what the chain's last
output sent on, or what a counting sink counted. Counts of a service that was killed die
with it; the hop lines then show what the surviving instance never saw (``before``), and
the run lines, counted from the source's frame numbers, stay exact: the first link after
a loss shows it, whichever sender ids the run came under.

Everything here is read from :class:`~arroyo_core.status.ServiceStatus` records; the only
transport details shown are ZeroMQ's (peers, refusals, overflow, budget), from a link's
``transport`` mapping, where it reports them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from arroyo_core.status import (
    LinkStatus,
    OperatorStatus,
    QueueStatus,
    RunLedgerStatus,
    RunStatus,
    ServiceStatus,
)

COLUMNS = ("SERVICE", "LINK", "RECEIVED", "MISSING", "DUP", "MALFORMED", "SENT", "DROPPED",
           "PEERS", "DISC", "NOTES")


def _count(mapping: Mapping[str, int]) -> str:
    """'3 (msgpack 2, length 1)' from {'msgpack': 2, 'length': 1}; '0' when empty."""
    if not mapping:
        return "0"
    total = sum(mapping.values())
    detail = ", ".join(f"{reason} {n}" for reason, n in sorted(mapping.items()))
    return f"{total} ({detail})"


def _ranges(ranges: Sequence[Sequence[int]]) -> str:
    shown = [f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:6]]
    more = ", ..." if len(ranges) > 6 else ""
    return "[" + ", ".join(shown) + more + "]" if shown else ""


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


def _peers(link: LinkStatus) -> tuple[str, str]:
    """A ZeroMQ link's connected peers and disconnects ('' where the transport has none)."""
    peers = link.transport.get("peers")
    if not isinstance(peers, dict):
        return "", ""
    return str(peers.get("peers", "")), str(peers.get("disconnects", ""))


def _input_row(name: str, link: LinkStatus) -> list[str]:
    if link.received is None:  # a source plug-in: it only makes messages
        return [name, link.name, "", "", "", "", _text(link.sent), "", "", "", ""]
    notes = []
    for src, sender in link.senders.items():
        if sender.first_seq:
            notes.append(f"joined {src} at seq {sender.first_seq}")
        if sender.missing_ranges:
            notes.append(f"{src} missing {_ranges(sender.missing_ranges)}")
    if link.lag is not None and link.lag.late:
        notes.append(f"{link.lag.late} late (worst {link.lag.worst_lag:.2f} s)")
    refused = (link.transport.get("connections") or {}).get("refused")
    if refused:
        notes.append(f"refused {_count(refused)}")
    peers, disconnects = _peers(link)
    return [name, link.name, str(link.received), str(link.missing), str(link.duplicates),
            _count(link.malformed), "", "", peers, disconnects, "; ".join(notes)]


def _output_row(name: str, link: LinkStatus) -> list[str]:
    peers, disconnects = _peers(link)
    notes = []
    if link.transport.get("overflow"):
        notes.append(str(link.transport["overflow"]))
    budget = link.transport.get("budget")
    if budget:
        notes.append(f"hwm {budget.get('hwm')} for {budget.get('max_bytes')} B")
    if link.batches:
        notes.append(f"{link.batched} in {link.batches} batches")
    sent = link.sent
    if link.runs is not None:  # a sink that counts runs: the frames it took
        sent = sum(run.frames for run in link.runs)
    return [name, link.name, "", "", "", "", _text(sent), _count(link.dropped), peers,
            disconnects, "; ".join(notes)]


def _queue_row(name: str, queue: QueueStatus) -> list[str]:
    return [name, queue.name, "", "", "", "", str(queue.sent), _count(queue.dropped), "", "",
            f"{queue.policy}, depth {queue.depth}"]


def _operator_row(name: str, operator: OperatorStatus) -> list[str] | None:
    """The operator's row, where it held back events: filtered (gave no event for) and
    failed (raised on), which the next hops count as such, not as lost."""
    if not (operator.filtered or operator.failed or operator.errors):
        return None
    notes = [f"{operator.events_in} events in, {operator.events_out} out",
             f"filtered {operator.filtered}", f"failed {operator.failed}"]
    if operator.errors:
        notes.append(f"errors {_count(operator.errors)}")
    return [name, f"operator {operator.type}", str(operator.events_in), "", "", "",
            str(operator.events_out), "", "", "", "; ".join(notes)]


def _accounted(record: RunLedgerStatus | RunStatus) -> str:
    """', filtered 20, failed 3': what the run's Stop accounts for (not lost)."""
    return "".join(f", {name} {n}" for name, n in (
        ("filtered", record.filtered), ("failed", record.failed),
        ("dropped by policy", record.policy_dropped)) if n)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in rows]


def hops(services: Sequence[ServiceStatus]) -> list[dict[str, Any]]:
    """Match each output to the inputs that received from it (by sender id).

    On PUSH the receivers share the stream; on PUB each gets all of it. ``unaccounted``
    is what was sent but neither received nor before a receiver's first message: in
    flight while the chain runs, lost once it is idle.
    """
    inputs = [(service.name, service.input) for service in services
              if service.input is not None]
    found = []
    for service in services:
        for output in service.outputs:
            src = output.src
            if not src:
                continue
            # a pool's dispatcher numbers each worker's stream apart: SRC.1, SRC.2, ...
            receivers = [(name, sender) for name, link in inputs
                         for key, sender in link.senders.items()
                         if key == src or key.startswith(src + ".")]
            sent = output.sent or 0
            received = sum(r.received for _, r in receivers)
            before = min((r.first_seq for _, r in receivers), default=0)
            if output.fans_out:
                unaccounted = max((sent - r.first_seq - r.received for _, r in receivers),
                                  default=sent)
            else:
                unaccounted = sent - before - received
            # Records are read one after another while the chain runs: a receiver read
            # after its sender may have received more than the sender had sent when read.
            # That is no message from nowhere; it reads as 0, with the reason.
            found.append({"from": service.name, "link": output.name,
                          "to": [name for name, _ in receivers], "sent": sent,
                          "received": received, "before": before,
                          "unaccounted": max(0, unaccounted), "read_apart": unaccounted < 0})
    return found


def runs(services: Sequence[ServiceStatus]) -> list[tuple[str, RunStatus]]:
    """Every run a sink of the chain counted end to end, with the sink's service name."""
    return [(service.name, run) for service in services for output in service.outputs
            for run in output.runs or []]


def terminal_outputs(services: Sequence[ServiceStatus]) -> list[tuple[str, LinkStatus]]:
    """The output links that no listed input receives from: where the chain ends (as far
    as the services given go), with their service's name."""
    receiving = {src for service in services if service.input is not None
                 for src in service.input.senders}
    return [(service.name, output) for service in services for output in service.outputs
            if output.src and output.run_ledger is not None and output.src not in receiving]


def run_ledgers(services: Sequence[ServiceStatus],
                ) -> dict[str, list[tuple[str, str, LinkStatus, RunLedgerStatus]]]:
    """Each run's records, by run id as text, in the order the services were given (each
    service's input, then its outputs): (service, "input"/"output", link, record)."""
    found: dict[str, list[tuple[str, str, LinkStatus, RunLedgerStatus]]] = {}
    for service in services:
        links = [("input", service.input)] if service.input is not None else []
        links += [("output", output) for output in service.outputs]
        for side, link in links:
            for record in link.run_ledger or []:
                found.setdefault(str(record.run), []).append(
                    (service.name, side, link, record))
    return found


def _seen(record: RunLedgerStatus, side: str) -> str:
    """'seen 29972 of 30000, missing 28 [...]' for one link's record of a run."""
    verb = "sent" if side == "output" else "seen"
    if record.share:  # a pool's worker: its share of the run
        of = f" of its share {record.expected}" if record.expected is not None else \
            " (its share)"
    elif record.started:
        of = f" of {record.expected}" if record.expected is not None else ""
    else:
        of = f" from frame {record.first} on (joined mid-run)" if record.first is not None \
            else " (joined mid-run)"
    text = f"{verb} {record.seen}{of}, missing {record.missing} {_ranges(record.missing_ranges)}"
    text = text.rstrip() + _accounted(record)
    if record.lost is not None and record.lost != record.missing:
        text += f", lost {record.lost}"
    notes = [f"dropped here {record.dropped}"] if record.dropped else []
    if record.duplicates:
        notes.append(f"duplicates {record.duplicates}")
    if record.late:
        notes.append(f"out of order {record.late}")
    if record.senders > 1:
        notes.append(f"from {record.senders} sender ids")
    return text.rstrip() + "".join(f", {note}" for note in notes)


def _run_lines(services: Sequence[ServiceStatus]) -> list[str]:
    """Per run: one line per link that saw it, then the end-to-end line(s)."""
    lines: list[str] = []
    ends = {id(output) for _, output in terminal_outputs(services)}
    for run, records in run_ledgers(services).items():
        expected = next((r.expected for *_, r in records
                         if r.expected is not None and not r.share), None)
        cut_short = any(r.cut_short for *_, r in records)
        if expected is None:
            state = "running: no Stop seen yet"
        elif cut_short:
            state = f"cut short: the source stopped it after {expected} frames"
        else:
            state = f"complete: {expected} frames sent"
        lines.append(f"  run {run[:12]} ({state})")
        rows = [[f"    {name}", f"{side} {link.pattern or link.kind}", link.address,
                 _seen(record, side)] for name, side, link, record in records]
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines += ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths,
                                                                           strict=False)),
                             row[-1]]).rstrip() for row in rows]
        for name, side, link, record in records:
            if side != "output" or id(link) not in ends:
                continue
            lines.append(f"    end to end, as {name} sent it on ({link.address}): "
                         + _end_to_end(record))
    return lines


def _end_to_end(record: RunLedgerStatus) -> str:
    ranges = _ranges(record.missing_ranges)
    if not record.started:
        return (f"{record.seen} frames from frame {record.first} on (it joined the run "
                f"midway), missing {record.missing} {ranges}").rstrip()
    if record.lost is None:
        return f"{record.seen} frames so far, missing {record.missing} {ranges}".rstrip()
    return (f"{record.seen} of {record.expected} frames, lost {record.lost}"
            f"{_accounted(record)} {ranges}").rstrip()


def _run_id(run: Any) -> str:
    return "(no run id)" if run is None else str(run)[:12]


def _state(run: RunStatus) -> str:
    state = ("cut short by its source" if run.cut_short else "complete") if run.complete \
        else "running"
    if run.joined_at is not None:
        state += f", joined mid-run at frame {run.joined_at}"
    return state


def _counted(run: RunStatus) -> str:
    """A sink's count of one run: what it saw of what was sent, and what was lost."""
    corrupt = f", corrupt {run.corrupt}" if run.corrupt is not None else ""
    ranges = _ranges(run.missing_ranges)
    if run.frames_sent is None:
        text = f"{run.frames} frames so far, missing {run.lost} {ranges}".rstrip()
    else:
        of = run.frames_sent - (run.joined_at or 0)
        since = f" (sent from frame {run.joined_at} on)" if run.joined_at else ""
        text = (f"{run.frames} of {of}{since} frames, lost {run.lost}{_accounted(run)} "
                f"{ranges}").rstrip()
    rate = f", {run.frames_per_s:.0f} frames/s"
    if run.rate_from != "start":
        rate += f" (from its {run.rate_from}: a backlog inflates it)"
    return f"{text}, duplicates {run.duplicates}{corrupt}{rate}"


def lost(services: Sequence[ServiceStatus]) -> int:
    """Frames lost in runs that ended, by the chain's counting sinks, or else by its last
    links' run ledgers: what ``arroyo status`` exits non-zero for."""
    counted = runs(services)
    if counted:
        return sum(run.lost for _, run in counted if run.complete)
    return sum(record.lost or 0 for _, output in terminal_outputs(services)
               for record in output.run_ledger or [])


def _pool_lines(services: Sequence[ServiceStatus]) -> list[str]:
    """For each output that dispatches to a pool, one line per worker it knows."""
    lines = []
    for service in services:
        for output in service.outputs:
            pool = output.transport.get("pool")
            if not isinstance(pool, dict) or not isinstance(pool.get("workers"), list):
                continue
            lines.append(f"  {service.name} {output.name}: {len(pool['workers'])} worker(s) "
                         f"now, {pool.get('joined', 0)} joined, {pool.get('gone', 0)} gone")
            for worker in pool["workers"]:
                if not isinstance(worker, dict):
                    continue
                lines.append(
                    f"    worker {worker.get('worker')} ({worker.get('src')}): given "
                    f"{worker.get('given')} ({100 * float(worker.get('share') or 0):.1f} %), "
                    f"{worker.get('rate')} msg/s, held {worker.get('held')}, credit "
                    f"{worker.get('credit')}")
    return lines


def _builder_lines(services: Sequence[ServiceStatus]) -> list[str]:
    """For each event builder (docs/event-building.md), its counts and one line a stream."""
    lines = []
    for service in services:
        built = service.input.transport.get("event_builder") if service.input else None
        if not isinstance(built, dict) or not isinstance(built.get("streams"), dict):
            continue
        lines.append(f"  {service.name}: built {built.get('built')}, complete "
                     f"{built.get('complete')}, dropped {built.get('dropped')}, given up "
                     f"{_count(built.get('given_up') or {})}, holding {built.get('held')}")
        for name, stream in built["streams"].items():
            link = stream.get("link") or {}
            lines.append(f"    {name} (per {stream.get('per')}): {stream.get('parts')} parts, "
                         f"incomplete {stream.get('incomplete')}, late {stream.get('late')}, "
                         f"seq missing {link.get('missing', 0)} on {link.get('link', '?')}")
    return lines


def render(services: Sequence[ServiceStatus], errors: Sequence[str] = ()) -> str:
    """The chain's status as text: links, hops and runs."""
    rows: list[list[str]] = [list(COLUMNS)]
    for service in services:
        name = service.name or "?"
        if service.error is not None:
            rows.append([name, "error", "", "", "", "", "", "", "", "", service.error])
            continue
        if service.input is not None:
            rows.append(_input_row(name, service.input))
            name = ""
        if service.queue is not None:
            rows.append(_queue_row(name, service.queue))
            name = ""
        operator_row = _operator_row(name, service.operator) if service.operator else None
        if operator_row is not None:
            rows.append(operator_row)
            name = ""
        for output in service.outputs:
            rows.append(_output_row(name, output))
            name = ""
    lines = _table(rows)
    hop_lines = []
    for hop in hops(services):
        if not hop["to"]:
            hop_lines.append(f"  {hop['from']} -> outside the services listed: sent "
                             f"{hop['sent']} (what arrived there is not known here)")
            continue
        to = ", ".join(hop["to"])
        before = f", {hop['before']} before its first message" if hop["before"] else ""
        why = ("(the receiver was read after the sender, and got more meanwhile)"
               if hop["read_apart"] else "(in flight, or lost if idle)")
        hop_lines.append(f"  {hop['from']} -> {to}: sent {hop['sent']}, received "
                         f"{hop['received']}{before}, unaccounted {hop['unaccounted']} {why}")
    if hop_lines:
        lines += ["", "hops:", *hop_lines]
    pool_lines = _pool_lines(services)
    if pool_lines:
        lines += ["", "pools (each worker: share of the events given, rate, messages held "
                  "unfinished, credit left):", *pool_lines]
    builder_lines = _builder_lines(services)
    if builder_lines:
        lines += ["", "event builders (events lacking each stream's part, its parts too late):",
                  *builder_lines]
    ledger_lines = _run_lines(services)
    if ledger_lines:
        lines += ["", "runs, link by link (frame numbers seen; they survive restarts):",
                  *ledger_lines]
    run_lines = []
    for sink, run in runs(services):
        run_lines.append(f"  {sink} run {_run_id(run.run)} ({_state(run)}): {_counted(run)}")
    if run_lines:
        lines += ["", "runs (end to end, from the source's frame numbers):", *run_lines]
    for error in errors:
        lines.append(f"unreachable: {error}")
    return "\n".join(lines)
