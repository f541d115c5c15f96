"""Reliable links, the glue: what an :class:`~arroyo_core.link.OutputLink` and an
:class:`~arroyo_core.link.InputLink` with ``reliable=True`` do besides the usual link step
(the logic is :mod:`.reliable`; the transport's part is an
:class:`~arroyo_core.transport.AckedSender` and a receiver that can :meth:`answer
<arroyo_core.transport.FrameReceiver.answer>`).

A sender's messages stay in its window until acknowledged. A receiver acknowledges a
message once it is *finished*: handled by its runtime and, when the runtime has reliable
outputs, once what they had been handed by then is acknowledged downstream in turn (the
runtime tells the input its outputs: :meth:`ReliableInput.follow`). So a message leaves
the source's window only once everything made of it is finished at the sink, and a crash
anywhere between loses nothing the source still holds.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from operator import methodcaller
from typing import Any

import msgpack

from .batch import decode_batch
from .budget import frames_nbytes, parse_bytes
from .errors import ConfigError, DecodeError
from .ledger import InputLedger
from .message import Message
from .reliable import (
    ACK,
    ACK_BYTES,
    ACK_DELAY_S,
    CARRIAGE_VERSION,
    HELLO,
    K_SHIFT,
    Arrivals,
    Delivery,
    Finishing,
    Item,
    Origin,
    Run,
    SendWindow,
    read_carriage,
)
from .transport import AckedSender, FrameReceiver, FrameSender, WaitLog
from .watermark import Watermark
from .wire import Limits

WINDOW = 256  # messages a reliable sender holds by default (a batch is one; see docs)
WINDOW_BYTES = 2**27  # ... and bytes, unless the link's max_bytes says less (docs)
WAIT_S = 0.1  # how long a full window waits for acknowledgements at a time
READ_S = ACK_DELAY_S  # flush() reads acknowledgements at most this often (as often as they come)

log = logging.getLogger(__name__)
_produced = methodcaller("produced")  # (a watermark's count now, without a Python loop)


class ReliableOutput(Watermark):
    """The sending side: a window, the origins of what is sent, what the receiver said;
    its watermark (done: acknowledged).

    Parameters
    ----------
    link
        The OutputLink (its ``src``, ``seq``, pending batch and ledger).
    sender
        The transport's AckedSender.
    window, window_bytes
        The window's bounds (messages, bytes); see :class:`~arroyo_core.reliable.SendWindow`.
    """

    def __init__(self, link: Any, sender: FrameSender, window: int, window_bytes: Any) -> None:
        if not isinstance(sender, AckedSender):
            raise ConfigError(f"{link.ledger.link}: the transport cannot carry a reliable "
                              "link (reliable works on tcp, ipc and shm push/pull)")
        self.link = link
        self.sender = sender
        if window_bytes is None:
            limit = getattr(sender, "max_bytes", None)
            window_bytes = parse_bytes(limit, "max_bytes") if limit else WINDOW_BYTES
        self.window = SendWindow(int(window), parse_bytes(window_bytes, "window_bytes"))
        self.dropping = getattr(sender, "overflow", "block") == "drop-newest"
        # What follows is made from a message of this origin (None: we are first), and
        # how many results of it came so far: set by the input that handles it
        # (ReliableInput.handling).
        self.origin: Origin | None = None
        self.k = 0
        self.runs: list[Run] = []  # origins of the Events in the link's pending batch
        self.dropped = 0  # sequence numbers that never went out (overflow, shutdown)
        self.acks = 0
        self._read = 0.0  # when the receiver's answers were last read
        self._unread = 0  # bytes sent since
        self._pack = msgpack.Packer(use_bin_type=True).pack  # (str, int and the header)

    # --- origins ----------------------------------------------------------------------

    def origin_of(self, seq: int) -> Origin:
        """The origin of the message the link numbers ``seq``: ours, if we are first; else
        the input's, with the index of this result of it."""
        origin = self.origin
        if origin is None:
            return self.link.src, seq, 0
        self.k += 1
        return origin[0], origin[1], (origin[2] << K_SHIFT) + self.k - 1

    def note(self, seq: int) -> None:
        """The link took an Event into its batch, to be numbered ``seq``: note its origin
        (a message sent alone is noted by :meth:`send`)."""
        osrc, oseq, k = self.origin_of(seq)
        runs = self.runs
        if runs:  # (add_origin, inline: once per Event)
            last = runs[-1]
            if last[0] == osrc and last[2] == k and last[1] + last[3] == oseq:
                last[3] += 1
                return
        runs.append([osrc, oseq, k, 1])

    # --- sending ----------------------------------------------------------------------

    def produced(self) -> int:
        """Sequence numbers handed to the link so far (batched ones too), and dropped."""
        batch = self.link._batch
        return self.link.seq + (len(batch.events) if batch is not None else 0) + self.dropped

    def settled(self) -> int:
        """Sequence numbers acknowledged (or dropped): :meth:`produced` once all are."""
        window = self.window
        return (window.base if window.entries else self.link.seq) + self.dropped

    def send(self, frames: list[Any], droppable: bool) -> str | None:
        """Put the message the link numbered next (one, or a batch whose Events'
        origins were noted) in the window and offer it; None, or why it was dropped."""
        window, runs = self.window, self.runs
        if runs:
            self.runs = []
            n = runs[0][3] if len(runs) == 1 else sum(run[3] for run in runs)
        else:
            runs, n = [[*self.origin_of(self.link.seq), 1]], 1
        # The window has room for almost every message: only then is _room's loop needed.
        kept = self.sender.keep(frames) if window.room else None
        if kept is None:
            kept = self._room(frames, droppable and self.dropping)
            if kept is None:
                self.dropped += n
                return "window full" if droppable and self.dropping else \
                    "no receiver acknowledged it before shutdown"
        nbytes = frames_nbytes(kept)
        window.put((self.link.seq, n, kept, runs, nbytes))
        self.pump()
        if window.unsent and not self.dropping:
            self._drain()
        self._unread += nbytes
        if self._unread >= ACK_BYTES:  # acknowledgements come about as often
            self.take(0)
        return None

    def _room(self, frames: list[Any], dropping: bool) -> list[Any] | None:
        """``frames`` as the window keeps them (:meth:`AckedSender.keep`) once it has room
        for them, waiting unless ``dropping``; None if it has none (dropped)."""
        waiting = WaitLog()
        while True:
            kept = self.sender.keep(frames) if self.window.room else None
            if kept is not None or dropping or self.sender.abandoned:
                return kept
            self._log_wait(waiting, "its window is full")
            self.pump()
            self.take(WAIT_S, room=bool(self.window.unsent))

    def _drain(self) -> None:
        """Wait until the receiver has taken what waits, as a plain link's send waits for
        room in its receiver's queue, reading what the receiver says meanwhile (so
        acknowledgements go on upstream). A stage that ran on instead, into its window,
        would find its input queue empty and wake for every message; held back, it finds
        the queue full and works through it (docs/reliability.md section 6)."""
        waiting = WaitLog()
        while self.window.unsent and not self.sender.abandoned:
            self._log_wait(waiting, "the receiver's queue is full")
            self.take(WAIT_S, room=True)
            self.pump()

    def _log_wait(self, waiting: WaitLog, why: str) -> None:
        if waiting.due():
            log.info("%s: waiting %.0f s: %s (%d messages, %d bytes held)",
                     self.link.ledger.link, waiting.waited, why, len(self.window),
                     self.window.nbytes)

    def pump(self) -> None:
        """Offer what is not yet sent, in order, as long as the receiver takes it (each
        header inside its carriage, :func:`~arroyo_core.reliable.carriage`, packed here by
        this output's own packer: the sending thread's, called per message)."""
        window, offer, pack = self.window, self.sender.offer, self._pack
        unsent = window.unsent
        while unsent:
            _, _, frames, runs, _ = unsent[0]
            if not offer([pack([CARRIAGE_VERSION, window.base, runs, frames[0]]), *frames[1:]],
                         False):
                return
            unsent.popleft()

    def take(self, timeout: float, room: bool = False) -> None:
        """Read what the receiver said (waiting up to ``timeout``, or, with ``room``, until
        it has room for a message) and act on it."""
        self._read, self._unread = time.monotonic(), 0
        window, src = self.window, self.link.src
        settled = False
        for kind, sender, seq in self.sender.replies(timeout, room):
            if kind == ACK:
                if sender == src and window.ack(seq):
                    settled = True
                    self.acks += 1
            elif kind == HELLO:
                window.resend_from(max(seq, window.base) if sender == src else window.base)
        if settled and self.on_settled is not None:
            self.on_settled()

    def flush(self) -> None:
        """Send what waits; read what the receiver said, at most every READ_S (a runtime
        flushes each time its queue runs empty, which a fast operator's does at almost
        every message: a poll each time cost more than the rest of the bookkeeping)."""
        if time.monotonic() - self._read >= READ_S:
            self.take(0)
        if self.window.unsent:
            self.pump()

    def close(self, linger_s: float) -> None:
        """Wait (up to ``linger_s``) until everything sent is acknowledged."""
        deadline = time.monotonic() + linger_s
        while self.window.entries and not self.sender.abandoned \
                and time.monotonic() < deadline:
            self.pump()
            self.take(WAIT_S / 2)
        if self.window.entries:
            log.warning("%s: closing with %d message(s) not acknowledged (the receiver is "
                        "gone or slow); they are lost if it lost them",
                        self.link.ledger.link, len(self.window))

    def status(self) -> dict[str, Any]:
        return {**self.window.status(), "acks": self.acks, "dropped": self.dropped}


class ReliableInput:
    """The receiving side: take each sender's messages in order and each origin once,
    and acknowledge what is finished.

    A received message (one, or a batch of Events) becomes one :class:`Delivery` that
    the runtime is handed at once, with one :class:`~arroyo_core.reliable.Finishing` item:
    the bookkeeping is per message received, not per Event, as on a plain link. Per
    Event there is only :meth:`handling` finding the next one and, on an operator with
    reliable outputs, telling them its origin.

    Parameters
    ----------
    receiver
        The transport's receiver (its :meth:`answer` carries acknowledgements and hellos).
    ledger
        The link's loss ledger (it counts every message accepted).
    """

    def __init__(self, receiver: FrameReceiver, ledger: InputLedger) -> None:
        self.receiver = receiver
        self.ledger = ledger
        self.arrivals = Arrivals()
        self.finishing = Finishing(receiver.answer)
        self._items = self.finishing.items  # (accept appends to it: a call each costs more)
        self.outputs: list[ReliableOutput] = []  # they note the origins of what they send
        self.watermarks: list[Watermark] = []  # what finishing a message waits on
        self.last_src = ""
        # Delivered, not yet handled, in order (a runtime handles in delivery order; its
        # queue's policy may skip some); the one being handled, and where in it.
        self._delivered: deque[Delivery] = deque()
        self._at: Delivery | None = None
        self._index = 0  # of the next message of _at
        self._taken: list[Item] = []  # items finished by the message handled
        self._current: Message | None = None
        receiver.on_connect = self.hello

    def follow(self, publishers: list[Any]) -> None:
        """The runtime's outputs: those with a watermark (reliable outputs, writers that
        flush) gate acknowledgements."""
        self.watermarks = [w for w in (getattr(p, "watermark", None) for p in publishers)
                           if isinstance(w, Watermark)]
        self.outputs = [w for w in self.watermarks if isinstance(w, ReliableOutput)]
        for watermark in self.watermarks:
            watermark.on_settled = self.finishing.advance

    def hello(self) -> None:
        """Tell the sender where we are (our connection is up, new or again)."""
        src = self.last_src
        expected = self.arrivals.expected.get(src, 0) if src else 0
        self.receiver.answer(None, HELLO, src, expected)

    def accept(self, frames: list[Any], token: Any, limits: Limits, lag: Any = None,
               nbytes: int = 0) -> Delivery | None:
        """What ``frames`` (of ``nbytes``) deliver (None: nothing, a duplicate or after a
        gap, answered here); DecodeError."""
        if not frames:
            raise DecodeError("carriage", "a reliable message has no frames")
        base, runs, header = read_carriage(frames[0])
        messages, envelope = decode_batch([header, *frames[1:]], limits)
        src, seq, count = envelope.src, envelope.seq, len(messages)
        origins = self.arrivals.arrive(base, runs, src, seq, count)
        if lag is not None:  # may raise FallenBehindError: the service ends
            lag.observe(envelope.time)
        if isinstance(origins, str):
            self._answer_refused(origins, token, src)
            return None
        self.last_src = src
        self.ledger.observe_many(src, seq, messages)  # in sequence: Arrivals saw to it
        fresh: Origin | list[Origin] = origins  # type: ignore[assignment]
        if isinstance(origins, list):  # some had before: those are dropped
            messages = [m for m, origin in zip(messages, origins, strict=True) if origin]
            fresh = [origin for origin in origins if origin is not None]
            if not messages:
                self.finishing.add(token, src, seq + count - 1, True, nbytes)
                return None
        item = [None, token, src, seq + count - 1, nbytes]  # (Finishing.add's, no call)
        self._items.append(item)
        return Delivery(messages, fresh, item, src)

    def _answer_refused(self, verdict: str, token: Any, src: str) -> None:
        """Answer a message not taken: ask for the gap's resend, or acknowledge again what
        was finished (its acknowledgement may have been lost)."""
        arrivals = self.arrivals
        if verdict == "gap":
            if arrivals.ask(src):
                self.receiver.answer(token, HELLO, src, arrivals.expected[src])
            return
        finished = self.finishing.finished.get(src)
        if finished is not None:
            self.receiver.answer(token, ACK, src, finished)

    def delivered_many(self, delivery: Delivery) -> None:
        """The link hands the runtime all of ``delivery``'s messages, in order."""
        self._delivered.append(delivery)

    def delivered(self, message: Message, tag: tuple[Any, ...]) -> None:
        """The link hands the runtime ``message`` alone (a Start or Stop, or after a
        fan-in that orders), with its tag from :meth:`Delivery.tags`."""
        self._delivered.append(Delivery([message], [tag[2]], tag[1], tag[0]))

    def handling(self, message: Message) -> None:
        """The runtime is about to hand ``message`` to its operator."""
        at, index = self._at, self._index
        while True:
            if at is None:
                if not self._delivered:
                    return  # not one of ours (nothing to finish, no origin)
                at, index = self._delivered.popleft(), 0
            messages = at.messages
            count = len(messages)
            while index < count and messages[index] is not message:
                index += 1  # dropped by the queue's policy: finished as it is
            if index == count:  # passed all of it (the rest was dropped)
                if at.item is not None:
                    self._taken.append(at.item)
                at = None
                continue
            if self.outputs:  # (Delivery.origin, inline: once per message)
                origins = at.origins
                origin = (origins[0], origins[1] + index, origins[2]) \
                    if isinstance(origins, tuple) else origins[index]
                for output in self.outputs:
                    output.origin, output.k = origin, 0
            index += 1
            if index == count:  # its last: handled with this one
                if at.item is not None:
                    self._taken.append(at.item)
                at = None
            self._at, self._index, self._current = at, index, message
            return

    def handled(self, message: Message) -> None:
        """The runtime is done with ``message`` (and with any its queue dropped before)."""
        if self._current is not message:
            self.handling(message)  # (a caller without a runtime: no handling() came)
        self._current = None
        taken = self._taken
        if taken:
            self._taken = []
            watermarks = self.watermarks
            marks = tuple(zip(watermarks, map(_produced, watermarks), strict=True))
            self.finishing.handled(taken, marks)

    def dropped(self, tag: tuple[Any, ...]) -> None:
        """Absorbed by the fan-in: finished as it is."""
        if tag[1] is not None:
            self.finishing.handled([tag[1]], ())

    def status(self) -> dict[str, Any]:
        return {**self.arrivals.status(), "unfinished": len(self.finishing)}
