"""Reliable links, the pure logic: what a sender keeps, what a receiver accepts, and when a
message is finished (docs/protocol.md section 12, docs/reliability.md section 6).

A reliable sender keeps every message it sent in a bounded :class:`SendWindow` until its
receiver acknowledges it, and sends again what follows the point a receiver says it has
reached (a *hello*: after a reconnect, a restart, or a gap it saw). A receiver takes each
sender's messages strictly in sequence (:class:`Arrivals`: a gap means a lost connection,
so what follows it is refused until the sender has resent the gap: go-back-N), and drops,
counting them, messages it had already finished: every message carries its *origin*, the
identity its source gave the message it was made from, so a message that a restarted stage
made again is known as the same. :class:`Finishing` says when a received message is done:
handled by the runtime and, on a stage with reliable outputs, what it produced acknowledged
downstream; acknowledgements are cumulative, per sender. A :class:`Delivery` is what one
received message hands the runtime.

The link glue (sockets' threads, the runtime's hooks) is :mod:`.reliable_link`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack

from .errors import DecodeError
from .metadata import packer
from .origins import SeenOrigins

CARRIAGE_VERSION = 2  # 1 sent the header as a frame of its own
ACK, HELLO = "ack", "hello"  # what a receiver tells its sender
MAX_ORIGINS = 1024  # origin sources a receiver remembers (a new one per source restart)
ASK_AGAIN_S = 1.0  # a gap not filled after this long is asked for again
# Acknowledgements are sent together, at most this late: each costs thread wake-ups at both
# ends. A sender's window must hold what flows in a round trip of them (docs/reliability.md).
ACK_DELAY_S = 0.01
# ... or as soon as they finish this many bytes, an eighth of the default window: a window
# of large messages drains in a few of them, and must not wait ACK_DELAY_S per hop for room
# (a sender looks for them as often, :meth:`~arroyo_core.reliable_link.ReliableOutput.send`).
ACK_BYTES = 2**24
K_SHIFT = 16  # an origin's k: result index within its input, shifted per hop with several

Origin = tuple[str, int, int]  # source's sender id, its sequence number, result index
Run = list[Any]  # [osrc, oseq, k, n]: n messages with origins (osrc, oseq + i, k)
# One message in a send window: its first sequence number, how many numbers it takes (a
# batch: one per Event), its frames (the header goes inside the carriage, made at each
# send with the window's base then), its origin runs and its size. A tuple: one is made
# per message sent.
Entry = tuple[int, int, list[Any], list[Run], int]  # (seq, n, frames, runs, nbytes)


def carriage(base: int, runs: list[Run], header: Any) -> bytes:
    """The reliable carriage frame: ``[version, base, runs, header]`` in msgpack, the
    message's header frame inside it (one frame fewer per message than beside it)."""
    return packer().pack([CARRIAGE_VERSION, base, runs, header])


def read_carriage(frame: Any) -> tuple[int, list[Run], bytes]:
    """``(base, runs, header)`` of a carriage frame; DecodeError (reason ``carriage``) for
    anything else. Whether the runs cover the header's messages, :func:`covers` says."""
    try:
        carried = msgpack.unpackb(frame, use_list=True, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise DecodeError("carriage", f"reliable carriage frame is not msgpack "
                          f"({type(exc).__name__})") from None
    version = carried[0] if type(carried) is list and carried else None
    if type(version) is not int or version != CARRIAGE_VERSION:
        raise DecodeError("carriage", f"reliable carriage version {version!r}, not "
                          f"{CARRIAGE_VERSION} (a sender of another Arroyo release?)")
    if len(carried) != 4:
        raise DecodeError("carriage", "reliable carriage frame is not [v, base, runs, header]")
    _, base, runs, header = carried
    if type(base) is not int or base < 0 or type(runs) is not list or type(header) is not bytes:
        raise DecodeError("carriage", "reliable carriage base, runs or header mistyped")
    for run in runs:
        if not (type(run) is list and len(run) == 4 and type(run[0]) is str
                and type(run[1]) is int and type(run[2]) is int and type(run[3]) is int
                and run[1] >= 0 and run[2] >= 0 and run[3] > 0):
            raise DecodeError("carriage", "a reliable origin run is not [osrc, oseq, k, n]")
    return base, runs, header


def covers(runs: list[Run], count: int) -> None:
    """DecodeError (reason ``carriage``) unless ``runs`` cover exactly ``count`` messages."""
    covered = runs[0][3] if len(runs) == 1 else sum(run[3] for run in runs)
    if covered != count:
        raise DecodeError("carriage", f"origin runs cover {covered} messages, the "
                          f"message holds {count}")


def origins_of(runs: list[Run]) -> list[Origin]:
    """The origins ``runs`` stand for, one by one."""
    return [(osrc, oseq + i, k) for osrc, oseq, k, n in runs for i in range(n)]


def add_origin(runs: list[Run], origin: Origin) -> None:
    """Append ``origin`` to ``runs``, extending the last run when it follows it."""
    if runs:
        last = runs[-1]
        if last[0] == origin[0] and last[2] == origin[2] and last[1] + last[3] == origin[1]:
            last[3] += 1
            return
    runs.append([origin[0], origin[1], origin[2], 1])


class SendWindow:
    """What a reliable sender sent and was not yet told is finished, in order.

    ``unsent`` are the entries still to be (re)offered to the transport, a suffix of the
    window. Bounded by ``max_messages`` and ``max_bytes``: :meth:`full` says when the
    overflow policy applies (one message larger than ``max_bytes`` still goes alone).
    """

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max(1, int(max_messages))
        self.max_bytes = max(1, int(max_bytes))
        self.entries: deque[Entry] = deque()
        self.unsent: deque[Entry] = deque()  # (the same tuples)
        self.nbytes = 0
        self.room = True  # not full(): kept as it changes, read per message sent
        self.base = 0  # the first sequence number not yet acknowledged
        self.resends = 0  # hellos that made the window go again
        self.resent = 0  # messages offered again

    def __len__(self) -> int:
        return len(self.entries)

    def full(self) -> bool:
        return not self.room

    def _measure(self) -> None:
        entries = self.entries
        self.room = not entries or (len(entries) < self.max_messages
                                    and self.nbytes < self.max_bytes)

    def put(self, entry: Entry) -> None:
        if not self.entries:
            self.base = entry[0]
        self.entries.append(entry)
        self.unsent.append(entry)
        self.nbytes += entry[4]
        self._measure()

    def ack(self, last: int) -> int:
        """Forget every message numbered up to ``last``; return how many went."""
        entries, unsent, gone = self.entries, self.unsent, 0
        while entries and entries[0][0] + entries[0][1] - 1 <= last:
            entry = entries.popleft()
            self.nbytes -= entry[4]
            gone += 1
            if unsent and unsent[0] is entry:
                unsent.popleft()
        if gone:
            self.base = entries[0][0] if entries else last + 1
            self._measure()
        return gone

    def resend_from(self, seq: int) -> None:
        """Offer again everything from ``seq`` on (the receiver has what comes before)."""
        again = deque(entry for entry in self.entries if entry[0] + entry[1] > seq)
        self.resent += max(0, len(again) - len(self.unsent))
        self.resends += 1
        self.unsent = again

    def status(self) -> dict[str, Any]:
        return {"held": len(self.entries), "held_bytes": self.nbytes,
                "max_messages": self.max_messages, "max_bytes": self.max_bytes,
                "unsent": len(self.unsent), "resends": self.resends, "resent": self.resent}


class Arrivals:
    """What a reliable receiver accepts: each sender's messages in sequence, each origin
    once. Used from the receiving thread only (:meth:`status` excepted)."""

    def __init__(self) -> None:
        self.expected: dict[str, int] = {}  # per sender: the next sequence number
        self.seen: dict[str, SeenOrigins] = {}  # per origin source
        self._asked: dict[str, tuple[int, float]] = {}
        self.resent_duplicates = 0  # messages received again (a resend of what was had)
        self.out_of_order = 0  # messages after a gap, refused until the gap is resent
        self.duplicates = 0  # messages made again from an origin already had (dropped)

    def arrive(self, base: int, runs: list[Run], src: str, seq: int, count: int,
               ) -> str | Origin | list[Origin | None]:
        """A received message of sender ``src`` numbered ``seq`` on (``count`` numbers: a
        batch's Events), ``base`` and ``runs`` from its carriage, in one step (it is taken
        per message received): ``gap`` or ``duplicate`` as :meth:`check` says, else the
        origins of its messages: ``(osrc, oseq, k)`` when they are one run all newer than
        any had from that source (the usual case; the i-th is ``(osrc, oseq + i, k)``),
        else a list, None for each had before (counted). DecodeError if the runs do not
        cover the message."""
        covers(runs, count)
        expected = self.expected
        if expected.get(src) == seq and base <= seq:  # the next one (check's "new")
            expected[src] = seq + count
            if self._asked:
                self._asked.pop(src, None)
        else:
            verdict = self.check(src, seq, count, base)
            if verdict != "new":
                return verdict
        if len(runs) == 1:
            osrc, oseq, k, n = runs[0]
            seen = self.seen.get(osrc) or self._seen(osrc)
            if (oseq, k) > seen.high:  # all new: noted at once
                seen.add_run(oseq, k, n)
                return osrc, oseq, k
        fresh = self.fresh
        return [origin if fresh(origin) else None for origin in origins_of(runs)]

    def check(self, src: str, seq: int, n: int, base: int) -> str:
        """``new``, ``duplicate`` (received before) or ``gap`` (ask for a resend: the
        message after a lost one, or a sender's first with earlier ones unacknowledged)."""
        expected = self.expected.get(src)
        if expected is None or expected < base:
            # A sender not heard before: its window starts at base. (Past what we had:
            # finished elsewhere, by a receiver before us.)
            expected = self.expected[src] = base
        if seq == expected:
            self.expected[src] = seq + n
            self._asked.pop(src, None)
            return "new"
        if seq < expected:
            self.resent_duplicates += 1
            return "duplicate"
        self.out_of_order += 1
        return "gap"

    def ask(self, src: str) -> bool:
        """Whether to ask ``src`` for a resend now (once per gap, again after a second)."""
        expected, now = self.expected[src], time.monotonic()
        asked = self._asked.get(src)
        if asked is not None and asked[0] == expected and now - asked[1] < ASK_AGAIN_S:
            return False
        self._asked[src] = (expected, now)
        return True

    def fresh(self, origin: Origin) -> bool:
        """False if a message of this origin was accepted before (counted). Origins may
        come out of order (after a pool), by up to :data:`~arroyo_core.origins.MAX_SEEN`."""
        if self._seen(origin[0]).add((origin[1], origin[2])):
            return True
        self.duplicates += 1
        return False

    def _seen(self, osrc: str) -> SeenOrigins:
        seen = self.seen.get(osrc)
        if seen is None:
            if len(self.seen) >= MAX_ORIGINS:
                del self.seen[next(iter(self.seen))]
            seen = self.seen[osrc] = SeenOrigins()
        return seen

    def status(self) -> dict[str, int]:
        return {"resent_duplicates": self.resent_duplicates, "out_of_order": self.out_of_order,
                "duplicates_dropped": self.duplicates}


Mark = tuple[Any, int]  # (an output with settled(), the count it must reach)
# A received message until it is finished: [marks, token, src, last, nbytes]. ``marks`` is
# None until it is handled (() once it needs nothing more). A list: one is made per message.
Item = list[Any]


class Finishing:
    """Received messages in arrival order until each is finished; finished ones are
    acknowledged to their sender through ``answer(token, ACK, src, last_seq, nbytes)`` (a
    receiver's :meth:`~arroyo_core.transport.FrameReceiver.answer`), cumulatively (the
    newest finished of each sender, and the bytes of what it newly finished)."""

    def __init__(self, answer: Callable[[Any, str, str, int, int], None]) -> None:
        self.answer = answer
        self.items: deque[Item] = deque()
        self.finished: dict[str, int] = {}  # per sender: the last finished
        self.lock = threading.Lock()

    def add(self, token: Any, src: str, last: int, done: bool, nbytes: int = 0) -> Item:
        """A received message of ``nbytes`` (``done``: nothing of it is delivered, it is
        finished once what came before it is)."""
        item = [() if done else None, token, src, last, nbytes]
        self.items.append(item)  # (a deque's append needs no lock; advance pops the left)
        if done:
            self.advance()
        return item

    def handled(self, items: list[Item], marks: tuple[Mark, ...]) -> None:
        """These were handled (in order); they are finished once each output reached its
        mark, and what came before them is finished."""
        for item in items:
            item[0] = marks
        try:
            oldest = self.items[0]
        except IndexError:
            return  # (finished meanwhile, by another thread's advance)
        if oldest is items[0]:  # else an older one waits, and its finishing advances
            self.advance()

    def advance(self) -> None:
        """Acknowledge what is finished, in order (any thread: a message handled, or an
        output's acknowledgement). Each output's count is read once per call: one that
        grows meanwhile calls again."""
        done: dict[tuple[Any, str], list[int]] = {}  # [last, nbytes]
        settled: dict[Any, int] = {}
        items = self.items
        with self.lock:  # (acknowledged inside: from two threads, in order all the same)
            while items:
                marks = items[0][0]
                if marks is None or marks and not _reached(marks, settled):
                    break
                _, token, src, last, nbytes = items.popleft()
                self.finished[src] = last
                said = done.get((token, src))
                if said is None:
                    done[(token, src)] = [last, nbytes]
                else:
                    said[0] = last
                    said[1] += nbytes
            for (token, src), (last, nbytes) in done.items():
                self.answer(token, ACK, src, last, nbytes)

    def __len__(self) -> int:
        return len(self.items)


def _reached(marks: tuple[Mark, ...], settled: dict[Any, int]) -> bool:
    """Whether every output has settled up to its mark; ``settled``: the outputs' counts
    read so far (a loop: called per message, where ``all()`` cost twice as much)."""
    for output, need in marks:
        count = settled.get(output)
        if count is None:
            count = settled[output] = output.settled()
        if count < need:
            return False
    return True


class Delivery:
    """What one reliable message delivers to the runtime: its fresh ``messages`` (one, or
    a batch's Events), their ``origins`` and its :class:`Finishing` ``item`` (finished
    once the last of them is handled), from sender ``src``.

    ``origins`` is ``(osrc, oseq, k)`` when the messages' origins are one run (the i-th
    is ``(osrc, oseq + i, k)``: the usual case, kept as one tuple), else a list, one each.
    """

    __slots__ = ("messages", "origins", "item", "src")

    def __init__(self, messages: list[Any], origins: Origin | list[Origin],
                 item: Item | None, src: str) -> None:
        self.messages, self.origins, self.item, self.src = messages, origins, item, src

    def origin(self, index: int) -> Origin:
        """The origin of ``messages[index]``."""
        origins = self.origins
        if isinstance(origins, tuple):
            return (origins[0], origins[1] + index, origins[2])
        return origins[index]

    def tags(self) -> list[tuple[Any, Any]]:
        """Each message with its tag ``(src, item, origin)`` (the item on the last only),
        for a link that passes them on one by one (:meth:`ReliableInput.delivered`)."""
        last = len(self.messages) - 1
        return [(message, (self.src, self.item if index == last else None,
                           self.origin(index)))
                for index, message in enumerate(self.messages)]
