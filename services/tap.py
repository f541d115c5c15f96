"""``arroyo tap``: attach to a running link and say what goes by, like tcpdump.

On a PUB link the tap subscribes to a shorter prefix of the link's topic, which the PUB
sender does not count as a subscriber (:mod:`arroyo_core.transports.zmq.pub`): attaching
or leaving never starts or holds a run. It decodes each message's header (arrays stay
views on the received frames, never copied) and prints, per second, the message and byte
rates and sizes, what its own ledger saw missing, and a few headers; every Start and Stop.
On a status socket it reads the status record each second and prints each link's rates.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from arroyo_core.address import Address
from arroyo_core.batch import decode_all
from arroyo_core.errors import ConfigError, DecodeError
from arroyo_core.ledger import InputLedger, wire_bytes
from arroyo_core.message import Event, Message
from arroyo_core.status import LinkStatus, ServiceStatus
from arroyo_core.transport import FrameReceiver, Frames, transport_for
from arroyo_core.wire import DEFAULT_LIMITS

TOPIC = "arroyo"  # the PUB links' default topic (arroyo_core.transports.zmq.pub)


def open_receiver(text: str, pattern: str | None, options: dict[str, Any], tap: bool,
                  what: str) -> tuple[FrameReceiver, str]:
    """An opened receiver of the link at ``text`` (connecting unless it starts with ``@``),
    and its name. On ZeroMQ it subscribes (``sub``) unless ``pattern`` says otherwise;
    ``tap``: as a tap, not counted by the PUB (see the module docstring)."""
    address = Address.parse(text, bind_by_default=False)
    transport = transport_for(address)
    options = {**address.query, **options}
    if address.scheme in ("tcp", "ipc", "inproc"):
        options.setdefault("pattern", pattern or "sub")
        if options["pattern"] == "sub" and tap:
            topic = str(options.get("topic", TOPIC))
            if len(topic) < 2:
                raise ConfigError(f"a tap subscribes to a shorter prefix of the topic, and "
                                  f"{topic!r} has none")
            options["topic"] = topic[:-1]
    elif pattern:
        options["pattern"] = pattern
    name = f"{what} {transport.name(address, options)}"
    try:
        receiver = transport.receiver(address, options, name)
    except TypeError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    receiver.open()
    return receiver, name


def received(receiver: FrameReceiver, stop: threading.Event) -> Iterator[Frames]:
    """The frames of each message the receiver yields (a transport's undecodable ones too:
    a DecodeError's frames are not there, so those are left out)."""
    for frames, _ in receiver.receive(stop):
        if not isinstance(frames, DecodeError):
            yield frames


def _clock() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]


def _size(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def describe(message: Message, src: str, seq: int) -> str:
    """One line for one message: kind, run, frame, sender and sequence number, arrays."""
    meta = message.meta
    run = str(meta.get("run", "-"))[:8]
    head = f"{message.kind:<5} run={run} src={src} seq={seq}"
    if isinstance(message, Event):
        arrays = ", ".join(
            f"{name} {value.dtype}{list(value.shape)}" if isinstance(value, np.ndarray)
            else f"{name} {len(value)} B" for name, value in message.payload.items())
        return f"{head} frame={meta.get('frame', '-')} {arrays}"
    shown = {key: value for key, value in meta.items() if key != "run"}
    return f"{head} {shown}"


class TapSummary:
    """What a tap saw: counts per interval and in all, and its own ledger of the senders'
    sequence numbers (what it missed, or what the link lost before it)."""

    def __init__(self, link: str, headers: int) -> None:
        self.ledger = InputLedger(link)
        self.headers = headers  # event lines per interval at most
        self.messages = 0  # Arroyo messages (a batch's Events each)
        self.wire = 0  # wire messages
        self.bytes = 0
        self.malformed = 0
        self._since = time.monotonic()
        self._window = [0, 0, 0, 0]  # messages, events, wire messages, bytes
        self._shown = 0

    def observe(self, frames: Frames) -> list[str]:
        """Count one wire message; the lines to print for it."""
        nbytes = wire_bytes(frames)
        self.wire += 1
        self.bytes += nbytes
        self._window[2] += 1
        self._window[3] += nbytes
        try:
            decoded = decode_all(frames, DEFAULT_LIMITS)
        except DecodeError as exc:
            self.malformed += 1
            self.ledger.reject(exc.reason, str(exc))
            return [f"{_clock()} malformed ({exc.reason}): {exc}"]
        lines = []
        batch = f" [batch of {len(decoded)}]" if len(decoded) > 1 else ""
        for message, envelope in decoded:
            self.ledger.observe(envelope.src, envelope.seq)
            self.messages += 1
            self._window[0] += 1
            is_event = message.kind == "event"
            self._window[1] += is_event
            if not is_event or self._shown < self.headers:
                self._shown += is_event
                lines.append(f"{_clock()} {describe(message, envelope.src, envelope.seq)}"
                             f"{batch if is_event else ''}")
        return lines

    def rate_line(self, force: bool = False, every: float = 1.0) -> str | None:
        """The rates since the last such line, once ``every`` seconds (or now, ``force``)."""
        elapsed = time.monotonic() - self._since
        if elapsed < every and not force:
            return None
        messages, events, wire, nbytes = self._window
        self._window, self._shown, self._since = [0, 0, 0, 0], 0, time.monotonic()
        record = self.ledger.status()
        elapsed = max(elapsed, 1e-9)
        mean = nbytes / wire if wire else 0
        return (f"{_clock()} -- {messages / elapsed:,.0f} msg/s ({events / elapsed:,.0f} "
                f"events/s), {_size(nbytes / elapsed)}/s, {wire / elapsed:,.0f} wire msg/s "
                f"of {_size(mean)} mean; in all {self.messages:,} messages, "
                f"{_size(self.bytes)}, missing {record.missing}, duplicates "
                f"{record.duplicates}, malformed {self.malformed}")


def _link_line(link: LinkStatus, before: LinkStatus | None, elapsed: float) -> str:
    count = link.received if link.direction == "input" else link.sent
    was = (before.received if link.direction == "input" else before.sent) if before else None
    nbytes, had = link.bytes or 0, (before.bytes or 0) if before else 0
    rate = f"{((count or 0) - (was or 0)) / elapsed:,.0f} msg/s" if was is not None else ""
    speed = f"{_size((nbytes - had) / elapsed)}/s" if before and link.bytes is not None else ""
    lost = sum(link.dropped.values()) + link.missing + sum(link.malformed.values())
    return (f"  {link.name}: {count if count is not None else '-':>10} msgs {rate:>14} "
            f"{speed:>12}  missing {link.missing} dropped {sum(link.dropped.values())} "
            f"malformed {sum(link.malformed.values())}" + (" !" if lost else ""))


def status_lines(record: ServiceStatus, before: ServiceStatus | None, elapsed: float,
                 ) -> list[str]:
    """Lines for one reading of a status socket: each link's count and rate since
    ``before``, the queue and the operator."""
    links_before = {link.name: link for link in
                    ([before.input, *before.outputs] if before else []) if link is not None}
    lines = [f"{_clock()} {record.name or 'service'} (up {record.uptime:.0f} s"
             f"{', ready' if record.ready else ', not ready'})"]
    for link in [record.input, *record.outputs]:
        if link is not None:
            lines.append(_link_line(link, links_before.get(link.name), elapsed))
    if record.queue is not None:
        queue = record.queue
        lines.append(f"  queue: {queue.depth}/{queue.max_items} messages, "
                     f"{_size(queue.bytes)}, dropped {sum(queue.dropped.values())}")
    if record.operator is not None and (record.operator.errors or record.operator.failed):
        lines.append(f"  operator errors: {record.operator.errors}")
    return lines


def tap_status(endpoint: str, interval: float, stop: Callable[[], bool],
               echo: Callable[[str], None], timeout: float = 2.0) -> None:
    """Print a status socket's readings every ``interval`` s until ``stop()``; a
    service that does not answer is said so and asked again (it may be restarting)."""
    from .status_server import query_status

    before: ServiceStatus | None = None
    when = time.monotonic()
    while not stop():
        try:
            record = ServiceStatus.from_dict(query_status(endpoint, timeout))
        except TimeoutError as exc:
            echo(f"{_clock()} {exc}")
            before = None
            continue
        now = time.monotonic()
        for line in status_lines(record, before, max(now - when, 1e-9)):
            echo(line)
        before, when = record, now
        time.sleep(max(0.0, interval - (time.monotonic() - now)))
