"""Several named input links, one per stream, joined into events: the event builder's input.

A service whose ``in`` is a table of names to addresses::

    in = { detector = ">tcp://{detector}:5555", spectra = ">tcp://{spectra}:5556" }
    join = { key = "frame", timeout = 2.0, incomplete = "emit", per_run = [] }

receives each stream on its own :class:`~arroyo_core.link.InputLink` (its own ledger,
decoding and checks) in a thread of its own, and hands the runtime what the
:class:`~arroyo_core.event_builder.EventBuilder` joined: one Start, an Event per key, one
Stop per run. The builder is called under one lock, by the receiving threads and by a
ticker that gives up on events past their timeout; a full queue blocks every stream
(back-pressure to each of them), but not a status read.

Inputs that acknowledge (Redis streams) are refused: an Event built from several parts
would have to acknowledge each part once it is handled, which this input does not do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .arguments import check_arguments
from .components import Deliver, Listener
from .errors import ConfigError
from .event_builder import EventBuilder
from .link import InputLink
from .message import Message
from .run_ledger import RunLedger
from .status import LinkStatus

log = logging.getLogger(__name__)

TICK_S = 0.05  # how often the ticker looks for events past their timeout


class EventBuilderInput(Listener):
    """Receives one stream per named input link and delivers built events.

    Parameters
    ----------
    addresses
        Stream name -> address (each an :class:`~arroyo_core.link.InputLink`).
    link_options
        Options for every input link (``max_message_bytes``, ``hwm``, ``pattern``...).
    join
        The :class:`~arroyo_core.event_builder.EventBuilder`'s options (``key``,
        ``per_run``, ``window``, ``window_bytes``, ``timeout``, ``stop_timeout``,
        ``incomplete``, ``in_order``).
    """

    def __init__(self, addresses: Mapping[str, str], link_options: Mapping[str, Any] | None = None,
                 join: Mapping[str, Any] | None = None) -> None:
        if not addresses:
            raise ConfigError("event builder: 'in' names no stream")
        options = dict(join or {})
        try:
            checked = check_arguments(EventBuilder, options, given=("streams",))
        except TypeError as exc:
            raise ConfigError(f"join: {exc}") from None
        self.builder = EventBuilder(list(addresses), **checked)
        self.links: dict[str, InputLink] = {}
        for name, address in addresses.items():
            try:
                link = InputLink(address, **dict(link_options or {}))
            except (TypeError, ConfigError) as exc:
                raise ConfigError(f"in {name}: {exc}") from None
            if link.acknowledges:
                raise ConfigError(f"in {name}: {link.address.shown} acknowledges what it "
                                  "receives; an event builder's inputs cannot (yet)")
            self.links[name] = link
        self.runs = RunLedger("event builder")
        self.lock = threading.Lock()  # the builder's state
        self.delivering = threading.Lock()  # what it made goes on in the order it was made
        self.blocked = 0.0  # seconds spent delivering (blocked by a full queue, mostly)
        self._deliver: Deliver | None = None

    def open(self) -> None:
        opened = []
        try:
            for link in self.links.values():
                link.open()
                opened.append(link)
        except BaseException:
            for link in opened:
                link.close()
            raise

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        threads = [threading.Thread(target=self._receive, args=(name, link), daemon=True,
                                    name=f"arroyo-receive-{name}")
                   for name, link in self.links.items()]
        for thread in threads:
            thread.start()
        builder = self.builder
        while not self.stop_requested.wait(TICK_S):
            self._step(builder.expire)
            if not any(thread.is_alive() for thread in threads):
                break
        for link in self.links.values():
            link.stop()
        for thread in threads:
            thread.join()
        self._step(lambda now: builder.finish())

    def _receive(self, name: str, link: InputLink) -> None:
        builder = self.builder

        def take(message: Message) -> None:
            self._step(lambda now: builder.add(name, message, now))

        try:
            link.start(take)
        except Exception:
            log.exception("event builder: input %s failed", name)
            self.stop()  # the other streams cannot build complete events without it
            raise

    def _step(self, step: Callable[[float], list[Message]]) -> None:
        """Run one step of the builder and deliver what it made, in the order made. The
        builder's lock is not held while delivering, which blocks when the queue is full:
        a status read waits for the builder, never for the queue.

        The builder's clock leaves out the time spent blocked delivering: while the chain
        after it holds it back, no stream's part can come in, and waiting for the chain
        must not count as waiting for a part."""
        deliver = self._deliver
        assert deliver is not None, "a step before start()"
        with self.delivering:
            with self.lock:
                messages = step(time.monotonic() - self.blocked)
            if messages:
                began = time.monotonic()
                for message in messages:
                    self.runs.observe(message)
                    deliver(message)
                self.blocked += time.monotonic() - began

    def stop(self) -> None:
        super().stop()
        for link in self.links.values():
            link.stop()

    def close(self) -> None:
        for link in self.links.values():
            link.close()

    def status(self) -> LinkStatus:
        """One record for the whole input: counts summed over the streams' links, the
        built run ledger, and per stream its link's record and the builder's counts."""
        records = {name: link.status() for name, link in self.links.items()}
        with self.lock:
            built = self.builder.status()
        malformed: dict[str, int] = {}
        senders = {}
        for record in records.values():
            for reason, count in record.malformed.items():
                malformed[reason] = malformed.get(reason, 0) + count
            senders.update(record.senders)
        streams = built.pop("streams")
        for name, record in records.items():
            streams[name]["link"] = record.to_dict()
        return LinkStatus(
            name=f"event builder ({', '.join(self.links)})", direction="input",
            received=sum(record.received or 0 for record in records.values()),
            missing=sum(record.missing for record in records.values()),
            duplicates=sum(record.duplicates for record in records.values()),
            malformed=malformed, senders=senders, run_ledger=self.runs.status(),
            transport={"event_builder": {**built, "streams": streams}})

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()


def stream_addresses(value: Any) -> dict[str, str] | None:
    """The table of stream names to addresses an ``in`` setting holds, or None for one
    address."""
    return dict(value) if isinstance(value, Mapping) else None

