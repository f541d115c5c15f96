"""The link step, written once for every transport: an :class:`OutputLink` is the
Publisher that encodes, numbers and counts what it hands a transport's FrameSender; an
:class:`InputLink` is the Listener that decodes, checks, counts and delivers what a
FrameReceiver yields. The transport is chosen by the address's scheme
(:mod:`arroyo_core.transport`)::

    Runtime ──publish──> OutputLink ──frames──> FrameSender ~~wire~~ FrameReceiver
                         (encode, seq, ledgers)                         │
    Runtime <──deliver── InputLink <──────────────frames, token─────────┘
                         (decode, limits, lag, ledgers, acknowledgements)

Each keeps two ledgers: per sender, its sequence numbers (:mod:`.ledger`); per run, the
frame numbers the source stamped (:mod:`.run_ledger`), which survive restarts.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from typing import Any

from .address import Address
from .batch import EventBatch, decode_batch
from .components import Deliver, Listener, Publisher
from .errors import ConfigError, DecodeError
from .fanin import FanIn
from .lag import LagWatch
from .ledger import InputLedger, OutputLedger, wire_bytes
from .message import Event, Message, Stop
from .reliable_link import WINDOW, ReliableInput, ReliableOutput
from .run_ledger import RunLedger
from .status import LinkStatus
from .transport import Transport, new_sender_id, transport_for
from .wire import DEFAULT_LIMITS, Limits, encode

log = logging.getLogger(__name__)


def _transport(address: str, options: dict[str, Any], output: bool,
               ) -> tuple[Transport, Address, dict[str, Any], str]:
    """The transport for ``address``, the parsed address, the transport's options (the
    address's query, then ``options``) and the link's name for logs and the ledger."""
    parsed = Address.parse(address, bind_by_default=output)
    transport = transport_for(parsed)
    options = {**parsed.query, **options}
    name = transport.name(parsed, options)
    return transport, parsed, options, f"{'output' if output else 'input'} {name}"


class OutputLink(Publisher):
    """Sends Arroyo messages to an address: ``@tcp://*:5555`` (ZeroMQ, bound),
    ``>tcp://host:5555`` (connected), ``ipc:///path``, ``redis://host:6379/0?stream=NAME``
    or any registered transport's scheme.

    Parameters
    ----------
    batch, batch_bytes, batch_delay
        Events under 64 KiB (``batch.BATCH_EVENT_BYTES``) go in batches
        (:mod:`arroyo_core.batch`) of at most ``batch`` Events (default: the transport's
        choice, 64 on ZeroMQ, none on Redis; 0 or 1: never batch) and ``batch_bytes`` of
        data, sent once full, once the first has waited ``batch_delay`` seconds, or at once
        when the runtime has nothing more queued. Only with a caller that calls
        :meth:`flush` (the runtime); a link used on its own sends every message at once.
        A batch is one message to the receiver's ``max_message_bytes``: keep
        ``batch_bytes`` below it.
    reliable, window, window_bytes
        Keep what is sent (at most ``window`` messages, ``window_bytes``) until the receiver
        has finished it, and send it again after a reconnect or its restart; a full window
        applies ``overflow`` (:mod:`arroyo_core.reliable_link`, docs/reliability.md 6).
    options
        For the transport (e.g. ``pattern``, ``hwm``, ``overflow`` for ZeroMQ; see its
        sender's docstring); an option it does not know is a ConfigError.
    """

    def __init__(self, address: str, batch: int | None = None, batch_bytes: int = 2**18,
                 batch_delay: float = 0.002, reliable: bool = False, window: int = WINDOW,
                 window_bytes: Any = None, **options: Any) -> None:
        if reliable:
            options["reliable"] = True
        transport, self.address, options, link = _transport(address, options, output=True)
        self.ledger = OutputLedger(link)
        self.runs = RunLedger(link)
        try:
            self.sender = transport.sender(self.address, options, link)
        except TypeError as exc:
            raise ConfigError(f"{link}: {exc}") from None
        self.src = new_sender_id()
        self.seq = 0
        self.reliable = self.watermark = (  # (done with a message once acknowledged)
            ReliableOutput(self, self.sender, window, window_bytes) if reliable else None)
        self._out = self.reliable or self.sender  # what sends (a reliable link's window)
        self._numbers_drops = self.sender.numbers_drops
        batch = self.sender.batch if batch is None else int(batch)
        self.batch_limits = (batch, int(batch_bytes), float(batch_delay))
        self._batch: EventBatch | None = None  # None until a caller will flush
        self.batches = 0  # batches sent
        self.batched = 0  # Events in them (counted in ledger.sent too)

    def open(self) -> None:
        self.sender.open()

    def allow_batching(self) -> None:
        if self.batch_limits[0] > 1:
            self._batch = EventBatch()

    def publish(self, message: Message) -> None:
        batch, reliable = self._batch, self.reliable
        if batch is not None:
            if isinstance(message, Event) and batch.add(message):
                if reliable is not None:
                    reliable.note(self.seq + len(batch) - 1)
                if batch.due(*self.batch_limits):
                    self.flush()
                return
            if batch:
                self.flush()  # in order: what was held back goes first
        self._send(message)

    def _send(self, message: Message) -> None:
        kind = message.kind
        if kind == "start":
            self.sender.wait_for_peers()
            self.sender.run_state(True)
        elif kind == "stop":
            message = self._with_drops(message)
        frames = encode(message, src=self.src, seq=self.seq)
        nbytes = wire_bytes(frames)  # before send: a PUB sender adds its topic frame
        dropped = self._out.send(frames, kind == "event")
        if kind == "stop":
            self.sender.run_state(False)
        if dropped is None:
            self.seq += 1
            self.ledger.sent += 1
            self.ledger.bytes += nbytes
            self.runs.observe(message)
        else:
            if self._numbers_drops:
                self.seq += 1
            self.ledger.drop(dropped)
            self.runs.drop(message)

    def flush(self) -> None:
        """Send the Events held back in a batch, if any (one alone as a plain Event)."""
        batch = self._batch
        if self.reliable is not None:
            self.reliable.flush()  # read acknowledgements, send what waits
        if not batch:
            return
        if len(batch) == 1:
            self._send(batch.clear()[0])
            return
        frames = batch.frames(src=self.src, seq=self.seq)
        events = batch.clear()
        nbytes = wire_bytes(frames)
        dropped = self._out.send(frames, True)
        if dropped is None or self._numbers_drops:
            self.seq += len(events)
        if dropped is None:
            self.batches += 1
            self.batched += len(events)
            self.ledger.sent += len(events)
            self.ledger.bytes += nbytes
            for event in events:
                self.runs.observe(event)
        else:
            for event in events:
                self.ledger.drop(dropped)
                self.runs.drop(event)

    def _with_drops(self, stop: Message) -> Message:
        """The run's Stop with this link's drops added to its ``dropped`` (a copy: the
        same Stop may go to other outputs too), so the next hop counts them as dropped by
        policy, not lost (arroyo_core.run_ledger.ACCOUNTED)."""
        here = self.runs.dropped(stop.meta.get("run"))
        if not here:
            return stop
        before = stop.meta.get("dropped")
        before = before if before.__class__ is int else 0
        return Stop(meta={**stop.meta, "dropped": before + here})

    def abandon(self) -> None:
        self.sender.abandon()

    def close(self) -> None:
        self.flush()
        if self.reliable is not None:
            self.reliable.close(getattr(self.sender, "linger_s", 10.0))
        self.sender.close()

    def status(self) -> LinkStatus:
        record = self.ledger.status(address=self.address.shown, bound=self.sender.bound,
                                    scheme=self.address.scheme, src=self.src, next_seq=self.seq,
                                    batches=self.batches, batched=self.batched,
                                    run_ledger=self.runs.status())
        transport = self.sender.status()
        if self.reliable is not None:
            transport["window"] = self.reliable.status()
        return record.with_transport(transport)

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()


class InputLink(Listener):
    """Receives Arroyo messages from an address (see :class:`OutputLink`; inputs connect
    unless the address starts with ``@``).

    Malformed messages are counted by reason and logged once; the valid ones around them
    still arrive. Arrays are views on the received frames (no copy).

    Parameters
    ----------
    max_message_bytes
        Larger messages are rejected (counted as malformed, reason ``size``).
    max_lag, on_lag
        Report a link that falls further behind its sender than ``max_lag`` seconds (0:
        off); with ``on_lag="disconnect"`` end the service instead (see
        :mod:`arroyo_core.lag`).
    order, order_window, order_timeout, stop_timeout
        After a pool: pass Events on in frame order, and give up on a worker's Stop after
        ``stop_timeout`` s (see :mod:`arroyo_core.fanin`).
    reliable
        From a reliable output: in order, each once, acknowledged when finished.
    options
        For the transport (see its receiver's docstring).
    """

    def __init__(self, address: str, max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes,
                 max_lag: float = 0.0, on_lag: str = "warn", order: bool = False,
                 order_window: int = 256, order_timeout: float = 1.0,
                 stop_timeout: float = 10.0, reliable: bool = False, **options: Any) -> None:
        options["max_message_bytes"] = int(max_message_bytes)  # the transport's ceiling
        if reliable:
            options["reliable"] = True
        transport, self.address, options, link = _transport(address, options, output=False)
        self.runs = RunLedger(link)
        self.limits = Limits(max_message_bytes=int(max_message_bytes))
        self.lag = LagWatch(link, float(max_lag), on_lag) if max_lag else None
        try:
            self.receiver = transport.receiver(self.address, options, link)
        except TypeError as exc:
            raise ConfigError(f"{link}: {exc}") from None
        self.ledger = InputLedger(link, shared=self.receiver.shares_sequence)
        self.reliable = ReliableInput(self.receiver, self.ledger) if reliable else None
        if self.reliable is not None:  # its own bookkeeping, called straight (per message)
            self.handling = self.reliable.handling  # type: ignore[method-assign]
            self.handled = self.reliable.handled  # type: ignore[method-assign]
        self.acknowledges = self.receiver.acknowledges and not reliable  # (it gates itself)
        self.fanin = FanIn(link, joins=not self.receiver.shares, order=order,
                           order_window=order_window, order_timeout=order_timeout,
                           stop_timeout=stop_timeout)
        # Messages delivered and not yet handled, in delivery order, for a receiver that
        # acknowledges: handled(m) acknowledges every token up to m's, since runtimes
        # handle in delivery order and a queue's drop policy may skip some. Weak keys: a
        # message dropped by the queue frees its entry.
        self._serial = 0
        self._inflight: deque[tuple[int, Any]] = deque()
        self._serial_of: weakref.WeakKeyDictionary[Message, int] = weakref.WeakKeyDictionary()

    def open(self) -> None:
        self.receiver.open()

    def start(self, deliver: Deliver) -> None:
        runs, receiver, reliable = self.runs, self.receiver, self.reliable
        acknowledges = receiver.acknowledges

        def pass_on(message: Message, tag: tuple[str, Any]) -> None:
            # After the fan-in (a pool's Starts and Stops joined): what the runtime gets.
            # The tag is (sender id, token); of a batch's Events only the last has the
            # token: it is acknowledged once that one, and so every one before it, is
            # handled.
            runs.observe(message, tag[0])
            if message.kind != "event":
                receiver.run_state(message.kind == "start")
            if reliable is not None:
                reliable.delivered(message, tag)
            elif acknowledges:
                self._serial += 1
                self._serial_of[message] = self._serial
                if tag[1] is not None:
                    self._inflight.append((self._serial, tag[1]))
            deliver(message)

        def drop(tag: tuple[str, Any]) -> None:  # absorbed by the fan-in: done with
            if reliable is not None:
                reliable.dropped(tag)
            elif acknowledges and tag[1] is not None:
                receiver.acknowledge([tag[1]])

        self.fanin.start(pass_on, drop)
        try:
            self._receive(pass_on)
        finally:
            self.fanin.finish()

    def _receive(self, pass_on: Any) -> None:
        ledger, limits, lag, fanin = self.ledger, self.limits, self.lag, self.fanin
        acknowledges, reliable, runs = self.receiver.acknowledges, self.reliable, self.runs
        every_message = fanin.active  # else Events go straight on, only Starts and Stops
        # Events straight on, nothing to acknowledge: a batch's in one hand-off (as pass_on)
        many = self.deliver_many if not (every_message or acknowledges) else None
        for frames, token in self.receiver.receive(self.stop_requested):
            try:
                if isinstance(frames, DecodeError):
                    raise frames  # received, but the transport could not unpack it
                nbytes = wire_bytes(frames)
                ledger.bytes += nbytes
                if reliable is None:
                    messages, envelope = decode_batch(frames, limits)
                    delivery = None
                elif (delivery := reliable.accept(frames, token, limits, lag, nbytes)) is None:
                    continue  # nothing new: a duplicate, or after a gap (answered)
            except DecodeError as exc:
                ledger.reject(exc.reason, str(exc))
                if acknowledges:
                    self.receiver.acknowledge([token])  # out of the way: it never will parse
                continue
            if delivery is not None:  # (lag and ledger done: reliable.accept)
                src, news = delivery.src, delivery.messages
            else:
                if lag is not None:  # may raise FallenBehindError: the service ends
                    lag.observe(envelope.time)
                src = envelope.src
                news = ledger.observe_many(src, envelope.seq, messages)  # one, or a batch's
                if not news:
                    if acknowledges:
                        self.receiver.acknowledge([token])  # duplicates: handled before
                    continue
            events: list[Message] = []  # to deliver at once; else one by one, with tags:
            if many is not None and news[0].kind == "event":  # one Event, or a batch's
                events, fresh = news, []
            elif delivery is not None:
                fresh = delivery.tags()
            else:
                fresh = [(message, (src, None)) for message in news]
                fresh[-1] = (news[-1], (src, token))  # the last has it
            fanin.heard()
            with fanin.lock:  # its timer may pass a Stop on that it gave up waiting for
                if events:
                    for message in events:
                        runs.observe(message, src)
                    if delivery is not None:
                        reliable.delivered_many(delivery)  # type: ignore[union-attr]
                    many(events)  # type: ignore[misc]
                for message, tag in fresh:
                    if every_message or message.kind != "event":
                        fanin.take(message, tag)
                    else:
                        pass_on(message, tag)

    def handled(self, message: Message) -> None:
        if not self._inflight:
            return  # a receiver that does not acknowledge, or nothing in flight
        serial = self._serial_of.pop(message, None)
        if serial is None:
            return
        inflight, done = self._inflight, []
        while inflight and inflight[0][0] <= serial:
            done.append(inflight.popleft()[1])
        self.receiver.acknowledge(done)

    def follow(self, publishers: list[Publisher]) -> None:
        if self.reliable is not None:
            self.reliable.follow(publishers)

    def close(self) -> None:
        if self._inflight:
            log.warning("%s: %d messages were delivered but not handled; they stay "
                        "unacknowledged and will be delivered again", self.ledger.link,
                        len(self._inflight))
        self.receiver.close()

    @property
    def unhandled(self) -> int:
        """Messages delivered and not yet handled (for acknowledging receivers)."""
        return len(self._inflight)

    def status(self) -> LinkStatus:
        lag = self.lag.status() if self.lag is not None else None
        unhandled = len(self._inflight) if self.receiver.acknowledges else None
        record = self.ledger.status(address=self.address.shown, bound=self.receiver.bound,
                                    scheme=self.address.scheme, lag=lag, unhandled=unhandled,
                                    run_ledger=self.runs.status())
        transport = self.receiver.status()
        if self.reliable is not None:
            transport["reliable"] = self.reliable.status()
        fanin = self.fanin.status()
        if fanin["order"] or fanin["stops_joined"]:
            transport["fan_in"] = fanin
        return record.with_transport(transport)

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()


# The names the ZeroMQ links had before links were chosen by address; they take any address.
ZmqPublisher = OutputLink
ZmqListener = InputLink
