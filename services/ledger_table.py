"""The status records of every service of a chain as one table, so a user sees which hop
lost what.

One row per link of each service (input, queue, outputs), then one line per hop (an
output matched to the inputs that received from it, by the sender id in the records),
then the end-to-end runs counted by a sink. Counts of a service that was killed die with
it; the hop lines then show what the surviving instance never saw (``before``), and the
sink's run line, counted from the source's frame numbers, stays exact.

Everything here is read from :class:`~arroyo_core.status.ServiceStatus` records; the only
transport details shown are ZeroMQ's (peers, refusals, overflow, budget), from a link's
``transport`` mapping, where it reports them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from arroyo_core.status import LinkStatus, QueueStatus, RunStatus, ServiceStatus

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
    sent = link.sent
    if link.runs is not None:  # a sink that counts runs: the frames it took
        sent = sum(run.frames for run in link.runs)
    return [name, link.name, "", "", "", "", _text(sent), _count(link.dropped), peers,
            disconnects, "; ".join(notes)]


def _queue_row(name: str, queue: QueueStatus) -> list[str]:
    return [name, queue.name, "", "", "", "", str(queue.sent), _count(queue.dropped), "", "",
            f"{queue.policy}, depth {queue.depth}"]


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
            receivers = [(name, link.senders[src]) for name, link in inputs
                         if src in link.senders]
            sent = output.sent or 0
            received = sum(r.received for _, r in receivers)
            before = min((r.first_seq for _, r in receivers), default=0)
            if output.fans_out:
                unaccounted = max((sent - r.first_seq - r.received for _, r in receivers),
                                  default=sent)
            else:
                unaccounted = sent - before - received
            found.append({"from": service.name, "link": output.name,
                          "to": [name for name, _ in receivers], "sent": sent,
                          "received": received, "before": before, "unaccounted": unaccounted})
    return found


def runs(services: Sequence[ServiceStatus]) -> list[tuple[str, RunStatus]]:
    """Every run a sink of the chain counted end to end, with the sink's service name."""
    return [(service.name, run) for service in services for output in service.outputs
            for run in output.runs or []]


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
        for output in service.outputs:
            rows.append(_output_row(name, output))
            name = ""
    lines = _table(rows)
    hop_lines = []
    for hop in hops(services):
        to = ", ".join(hop["to"]) or "no service listed here"
        before = f", {hop['before']} before its first message" if hop["before"] else ""
        hop_lines.append(f"  {hop['from']} -> {to}: sent {hop['sent']}, received "
                         f"{hop['received']}{before}, unaccounted {hop['unaccounted']} "
                         "(in flight, or lost if idle)")
    if hop_lines:
        lines += ["", "hops:", *hop_lines]
    run_lines = []
    for sink, run in runs(services):
        state = "complete" if run.complete else "running"
        sent = "?" if run.frames_sent is None else run.frames_sent
        corrupt = f", corrupt {run.corrupt}" if run.corrupt is not None else ""
        run_lines.append(f"  {sink} run {str(run.run)[:12]} ({state}): {run.frames} of {sent}"
                         f" frames, lost {run.lost} {_ranges(run.missing_ranges)}".rstrip()
                         + f", duplicates {run.duplicates}{corrupt}")
    if run_lines:
        lines += ["", "runs (end to end, from the source's frame numbers):", *run_lines]
    for error in errors:
        lines.append(f"unreachable: {error}")
    return "\n".join(lines)
