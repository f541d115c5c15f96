"""Several listeners feeding one runtime, as one listener: an arroyopy block's
``listeners`` list, each given the same operator.

Each listener receives in a thread of its own and delivers to the runtime's one queue (so
a full queue holds every one of them back). A listener that acknowledges (a Redis stream)
is told a message was handled only for the messages it delivered, in the order it
delivered them, as it would be alone.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from .components import Deliver, Listener
from .message import Message
from .status import LinkStatus

log = logging.getLogger(__name__)


class MergedInput(Listener):
    """The listeners of ``listeners`` (name -> listener), run side by side.

    The input ends when every listener has returned (or :meth:`stop` was called); one that
    fails is logged, and the others go on. Its status record sums the listeners' counts and
    keeps each one's record under ``transport["inputs"]``.
    """

    def __init__(self, listeners: Mapping[str, Listener]) -> None:
        self.listeners = dict(listeners)
        self.acknowledges = any(listener.acknowledges for listener in self.listeners.values())
        # Which listener delivered a message not yet handled (only where one acknowledges).
        self._delivered_by: weakref.WeakKeyDictionary[Message, Listener] = (
            weakref.WeakKeyDictionary())

    def open(self) -> None:
        opened: list[Listener] = []
        try:
            for listener in self.listeners.values():
                listener.open()
                opened.append(listener)
        except BaseException:
            for listener in opened:
                listener.close()
            raise

    def start(self, deliver: Deliver) -> None:
        threads = [threading.Thread(target=self._receive, args=(name, listener, deliver),
                                    daemon=True, name=f"arroyo-receive-{name}")
                   for name, listener in self.listeners.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _receive(self, name: str, listener: Listener, deliver: Deliver) -> None:
        def tagged(message: Message) -> None:
            self._delivered_by[message] = listener
            deliver(message)

        try:
            listener.start(tagged if listener.acknowledges else deliver)
        except Exception:
            log.exception("input %s failed; the other inputs go on", name)

    def stop(self) -> None:
        super().stop()
        for listener in self.listeners.values():
            listener.stop()

    def handled(self, message: Message) -> None:
        listener = self._delivered_by.pop(message, None)
        if listener is not None:
            listener.handled(message)

    def close(self) -> None:
        for listener in self.listeners.values():
            listener.close()

    def status(self) -> LinkStatus:
        records = {name: listener.status() for name, listener in self.listeners.items()}
        malformed: dict[str, int] = {}
        senders: dict[str, Any] = {}
        for record in records.values():
            for reason, count in record.malformed.items():
                malformed[reason] = malformed.get(reason, 0) + count
            senders.update(record.senders)
        return LinkStatus(
            name=f"inputs ({', '.join(self.listeners)})", direction="input",
            received=sum(record.received or 0 for record in records.values()),
            missing=sum(record.missing for record in records.values()),
            duplicates=sum(record.duplicates for record in records.values()),
            malformed=malformed, senders=senders,
            transport={"inputs": {name: record.to_dict() for name, record in records.items()}})
