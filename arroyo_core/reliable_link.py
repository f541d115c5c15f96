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
from typing import Any

from .budget import frames_nbytes, parse_bytes
from .errors import ConfigError, DecodeError
from .ledger import InputLedger
from .message import Message
from .reliable import (
    ACK,
    HELLO,
    K_SHIFT,
    Arrivals,
    Entry,
    Finishing,
    Origin,
    Run,
    SendWindow,
    carriage,
    read_runs,
)
from .transport import AckedSender, FrameReceiver, FrameSender
from .watermark import Watermark
from .wire import Limits

WINDOW = 1024  # messages a reliable sender holds by default (a batch is one)
WINDOW_BYTES = 2**25  # ... and bytes, unless the link's max_bytes says less
WAIT_S = 0.1  # how long a full window waits for acknowledgements at a time
READ_S = 0.001  # flush() reads acknowledgements at most this often (they come every 2 ms)

log = logging.getLogger(__name__)


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
        self.origin: Origin | None = None  # of the input being handled (None: we are first)
        self.k = 0  # results of that input so far
        self.runs: list[Run] = []  # origins of the Events in the link's pending batch
        self.dropped = 0  # sequence numbers that never went out (overflow, shutdown)
        self.acks = 0
        self._read = 0.0  # when flush() last read the receiver's answers

    # --- origins ----------------------------------------------------------------------

    def begin(self, origin: Origin | None) -> None:
        """What follows is made from a message of this origin (the runtime handles it)."""
        self.origin, self.k = origin, 0

    def note(self, seq: int) -> None:
        """The link took a message, to be numbered ``seq``: note its origin (ours, if we
        are first; else the input's, with the index of this result of it)."""
        origin, runs = self.origin, self.runs
        if origin is None:
            osrc, oseq, k = self.link.src, seq, 0
        else:
            osrc, oseq, k = origin[0], origin[1], (origin[2] << K_SHIFT) + self.k
            self.k += 1
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
        return self.link.seq + (len(batch) if batch else 0) + self.dropped

    def settled(self) -> int:
        """Sequence numbers acknowledged (or dropped): :meth:`produced` once all are."""
        window = self.window
        return (window.base if window.entries else self.link.seq) + self.dropped

    def send(self, frames: list[Any], droppable: bool) -> str | None:
        """Put the message the link numbered next (the one or the batch whose origins
        were noted) in the window and offer it; None, or why it was dropped."""
        window, runs = self.window, self.runs
        self.runs = []
        n = sum(run[3] for run in runs)
        kept = self._room(frames, droppable and self.dropping)
        if kept is None:
            self.dropped += n
            return "window full" if droppable and self.dropping else \
                "no receiver acknowledged it before shutdown"
        window.put(Entry(self.link.seq, n, kept, runs, frames_nbytes(kept)))
        self.pump()
        return None

    def _room(self, frames: list[Any], dropping: bool) -> list[Any] | None:
        """``frames`` as the window keeps them (:meth:`AckedSender.keep`) once it has room
        for them, waiting unless ``dropping``; None if it has none (dropped)."""
        waited = time.monotonic()
        while True:
            kept = None if self.window.full() else self.sender.keep(frames)
            if kept is not None or dropping or self.sender.abandoned:
                return kept
            self.pump()
            self.take(WAIT_S)
            if time.monotonic() - waited > 5.0:
                log.info("%s: window full (%d messages, %d bytes) for 5 s: waiting for "
                         "the receiver to acknowledge", self.link.ledger.link,
                         len(self.window), self.window.nbytes)
                waited = time.monotonic()

    def pump(self) -> None:
        """Offer what is not yet sent, in order, as long as the receiver takes it."""
        window, offer = self.window, self.sender.offer
        unsent = window.unsent
        while unsent:
            entry = unsent[0]
            if not offer([carriage(window.base, entry.runs), *entry.frames], False):
                return
            unsent.popleft()

    def take(self, timeout: float) -> None:
        """Read what the receiver said (waiting up to ``timeout``) and act on it."""
        window, src = self.window, self.link.src
        settled = False
        for kind, sender, seq in self.sender.replies(timeout):
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
        now = time.monotonic()
        if now - self._read >= READ_S:
            self._read = now
            self.take(0)
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
        self.finishing = Finishing(lambda token, src, seq: receiver.answer(token, ACK, src, seq))
        self.outputs: list[ReliableOutput] = []  # they note the origins of what they send
        self.watermarks: list[Watermark] = []  # what finishing a message waits on
        self.last_src = ""
        # Delivered, not yet handled: (message, origin, Finishing item or None), in order
        # (a runtime handles in delivery order; its queue's policy may skip some).
        self._delivered: deque[tuple[Message, Origin, Any]] = deque()
        self._taken: list[Finishing.Item] = []  # items of the message being handled
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

    def accept(self, frames: list[Any], token: Any, limits: Limits, decode: Any,
               lag: Any = None) -> list[tuple[Message, Any]]:
        """The messages of ``frames`` to deliver, with their tags ``(src, item, origin)``
        (``item``, on the last only: what :meth:`handled` finishes); DecodeError."""
        if len(frames) < 2:
            raise DecodeError("carriage", "a reliable message has a carriage frame and a "
                              "message")
        messages = decode(frames[1:], limits)
        base, runs = read_runs(frames[0], len(messages))
        src, seq = messages[0][1].src, messages[0][1].seq
        if lag is not None:  # may raise FallenBehindError: the service ends
            lag.observe(messages[0][1].time)
        arrivals = self.arrivals
        verdict = arrivals.check(src, seq, len(messages), base)
        if verdict == "gap":
            if arrivals.ask(src):
                self.receiver.answer(token, HELLO, src, arrivals.expected[src])
            return []
        if verdict == "duplicate":
            finished = self.finishing.finished.get(src)
            if finished is not None:  # its acknowledgement may have been lost
                self.receiver.answer(token, ACK, src, finished)
            return []
        self.last_src = src
        observe = self.ledger.observe
        for _message, envelope in messages:
            observe(envelope.src, envelope.seq)
        out: list[tuple[Message, Any]]
        if len(runs) == 1 and arrivals.fresh_run(runs[0]):  # the usual: all new
            osrc, oseq, k, _n = runs[0]
            out = [(message, (src, None, (osrc, oseq + i, k)))
                   for i, (message, _envelope) in enumerate(messages)]
        else:
            fresh = arrivals.fresh
            origins = [(osrc, oseq + i, k) for osrc, oseq, k, n in runs for i in range(n)]
            out = [(message, (src, None, origin))
                   for (message, _envelope), origin in zip(messages, origins, strict=True)
                   if fresh(origin)]
        item = self.finishing.add(token, src, seq + len(messages) - 1, done=not out)
        if out:
            message, (src, _, origin) = out[-1]
            out[-1] = (message, (src, item, origin))
        return out

    def delivered(self, message: Message, tag: tuple[Any, ...]) -> None:
        self._delivered.append((message, tag[2], tag[1]))

    def handling(self, message: Message) -> None:
        """The runtime is about to hand ``message`` to its operator."""
        delivered, taken = self._delivered, self._taken
        while delivered:
            queued, origin, item = delivered.popleft()
            if item is not None:
                taken.append(item)
            if queued is message:
                self._current = message
                for output in self.outputs:
                    output.begin(origin)
                return

    def handled(self, message: Message) -> None:
        """The runtime is done with ``message`` (and with any its queue dropped before)."""
        if self._current is not message:
            self.handling(message)  # (a caller without a runtime: no handling() came)
        self._current = None
        taken, self._taken = self._taken, []
        if taken:
            self.finishing.handled(taken, tuple((w, w.produced()) for w in self.watermarks))

    def dropped(self, tag: tuple[Any, ...]) -> None:
        """Absorbed by the fan-in: finished as it is."""
        if tag[1] is not None:
            self.finishing.handled([tag[1]], ())

    def status(self) -> dict[str, Any]:
        return {**self.arrivals.status(), "unfinished": len(self.finishing)}
