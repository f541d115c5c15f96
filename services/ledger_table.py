"""The ledgers of every service of a chain as one table, so a user sees which hop lost what.

One row per link of each service (input, queue, outputs), then one line per hop (an
output matched to the inputs that received from it, by the sender id in the ledgers),
then the end-to-end runs counted by a sink. Counts of a service that was killed die with
it; the hop lines then show what the surviving instance never saw (``before``), and the
sink's run line, counted from the source's frame numbers, stays exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COLUMNS = ("SERVICE", "LINK", "RECEIVED", "MISSING", "DUP", "MALFORMED", "SENT", "DROPPED",
           "PEERS", "DISC", "NOTES")


def _count(mapping: Any) -> str:
    """'3 (msgpack 2, length 1)' from {'msgpack': 2, 'length': 1}; '0' when empty."""
    if not mapping:
        return "0"
    total = sum(mapping.values())
    detail = ", ".join(f"{reason} {n}" for reason, n in sorted(mapping.items()))
    return f"{total} ({detail})"


def _ranges(ranges: Any) -> str:
    shown = [f"{a}" if a == b else f"{a}-{b}" for a, b in (ranges or [])[:6]]
    more = ", ..." if len(ranges or []) > 6 else ""
    return "[" + ", ".join(shown) + more + "]" if shown else ""


def _peers(stats: dict[str, Any]) -> tuple[str, str]:
    peers = stats.get("peers")
    if not isinstance(peers, dict):
        return "", ""
    return str(peers.get("peers", "")), str(peers.get("disconnects", ""))


def _input_row(name: str, stats: dict[str, Any]) -> list[str]:
    link = str(stats.get("link", "input"))
    if "received" not in stats:  # a source plug-in: it only makes messages
        return [name, link, "", "", "", "", str(stats.get("sent", "")), "", "", "", ""]
    notes = []
    for src, sender in (stats.get("senders") or {}).items():
        if sender.get("first_seq"):
            notes.append(f"joined {src} at seq {sender['first_seq']}")
        if sender.get("missing_ranges"):
            notes.append(f"{src} missing {_ranges(sender['missing_ranges'])}")
    if stats.get("late"):
        notes.append(f"{stats['late']} late (worst {stats.get('worst_lag', 0):.2f} s)")
    refused = (stats.get("connections") or {}).get("refused")
    if refused:
        notes.append(f"refused {_count(refused)}")
    peers, disconnects = _peers(stats)
    return [name, link, str(stats.get("received", "")), str(stats.get("missing", "")),
            str(stats.get("duplicates", "")), _count(stats.get("malformed")), "", "", peers,
            disconnects, "; ".join(notes)]


def _output_row(name: str, stats: dict[str, Any]) -> list[str]:
    peers, disconnects = _peers(stats)
    notes = []
    if stats.get("overflow"):
        notes.append(str(stats["overflow"]))
    if stats.get("policy"):
        notes.append(f"{stats['policy']}, depth {stats.get('depth', 0)}")
    budget = stats.get("budget")
    if budget:
        notes.append(f"hwm {budget.get('hwm')} for {budget.get('max_bytes')} B")
    link = str(stats.get("link", "output"))
    sent = stats.get("sent", "")
    if "runs" in stats:
        sent = sum(run.get("frames", 0) for run in stats["runs"])
    return [name, link, "", "", "", "", str(sent), _count(stats.get("dropped")), peers,
            disconnects, "; ".join(notes)]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in rows]


def hops(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Match each output to the inputs that received from it (by sender id).

    On PUSH the receivers share the stream; on PUB each gets all of it. ``unaccounted``
    is what was sent but neither received nor before a receiver's first message: in
    flight while the chain runs, lost once it is idle.
    """
    inputs = [(reply.get("name", "?"), reply.get("input") or {}) for reply in replies]
    found = []
    for reply in replies:
        for output in reply.get("outputs") or []:
            src = output.get("src")
            if not src:
                continue
            receivers = [(name, stats["senders"][src]) for name, stats in inputs
                         if src in (stats.get("senders") or {})]
            sent = int(output.get("sent", 0))
            fanout = str(output.get("link", "")).split()[1:2] == ["pub"]
            received = sum(r["received"] for _, r in receivers)
            before = min((r.get("first_seq", 0) for _, r in receivers), default=0)
            if fanout:
                unaccounted = max((sent - r.get("first_seq", 0) - r["received"]
                                   for _, r in receivers), default=sent)
            else:
                unaccounted = sent - before - received
            found.append({"from": reply.get("name", "?"), "link": output.get("link"),
                          "to": [name for name, _ in receivers], "sent": sent,
                          "received": received, "before": before, "unaccounted": unaccounted})
    return found


def runs(replies: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every run a sink of the chain counted end to end, with the sink's name."""
    return [(reply.get("name", "?"), run) for reply in replies
            for output in reply.get("outputs") or [] for run in output.get("runs") or []]


def render(replies: list[dict[str, Any]], errors: Sequence[str] = ()) -> str:
    """The chain's ledger as text: links, hops and runs."""
    rows: list[list[str]] = [list(COLUMNS)]
    for reply in replies:
        name = str(reply.get("name", "?"))
        if "error" in reply:
            rows.append([name, "error", "", "", "", "", "", "", "", "", str(reply["error"])])
            continue
        if reply.get("input"):
            rows.append(_input_row(name, reply["input"]))
            name = ""
        if reply.get("queue"):
            rows.append(_output_row(name, reply["queue"]))
            name = ""
        for output in reply.get("outputs") or []:
            rows.append(_output_row(name, output))
            name = ""
    lines = _table(rows)
    hop_lines = []
    for hop in hops(replies):
        to = ", ".join(hop["to"]) or "no service listed here"
        before = f", {hop['before']} before its first message" if hop["before"] else ""
        hop_lines.append(f"  {hop['from']} -> {to}: sent {hop['sent']}, received "
                         f"{hop['received']}{before}, unaccounted {hop['unaccounted']} "
                         "(in flight, or lost if idle)")
    if hop_lines:
        lines += ["", "hops:", *hop_lines]
    run_lines = []
    for sink, run in runs(replies):
        state = "complete" if run.get("complete") else "running"
        extra = ""
        if "corrupt" in run:
            extra = f", corrupt {run['corrupt']}"
        run_lines.append(f"  {sink} run {str(run.get('run'))[:12]} ({state}): {run.get('frames')}"
                         f" of {run.get('frames_sent', '?')} frames, lost {run.get('lost')} "
                         f"{_ranges(run.get('missing_ranges'))}".rstrip()
                         + f", duplicates {run.get('duplicates', 0)}{extra}")
    if run_lines:
        lines += ["", "runs (end to end, from the source's frame numbers):", *run_lines]
    for error in errors:
        lines.append(f"unreachable: {error}")
    return "\n".join(lines)
