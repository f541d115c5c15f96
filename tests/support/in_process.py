"""A listener in a real Runtime in a thread of the test's process, so ``Listener.handled``
(and the acknowledgements that follow it) happen as in a service; and a slow operator."""

from __future__ import annotations

import threading
from typing import Any

from arroyo_core.message import Event, Message
from arroyo_core.operators import PassThrough
from arroyo_core.runtime import Runtime
from arroyo_core.sinks import CollectingSink
from tests.support.waiting import wait_for


class Running:
    """``listener`` -> ``operator`` (a pass-through by default) -> ``publishers`` (a
    CollectingSink, :attr:`sink`, by default), run until :meth:`stop`."""

    def __init__(self, listener: Any, operator: Any = None,
                 publishers: list[Any] | None = None) -> None:
        self.listener = listener
        self.sink = CollectingSink()
        self.runtime = Runtime(listener, operator or PassThrough(), publishers or [self.sink],
                               drain_timeout=5)
        self.runtime.open()
        self.thread = threading.Thread(target=self.runtime.run, daemon=True)
        self.thread.start()

    @property
    def messages(self) -> list[Message]:
        return self.sink.messages

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Message]:
        wait_for(lambda: len(self.messages) >= count, timeout, f"{count} messages")
        return self.messages

    def stop(self) -> None:
        if self.thread.is_alive():
            self.runtime.stop()
            self.thread.join(10)


class HoldingOperator(PassThrough):
    """Holds the message whose ``frame`` is ``hold`` until released: a slow operator."""

    def __init__(self, hold: int) -> None:
        super().__init__()
        self.hold = hold
        self.reached = threading.Event()
        self.release = threading.Event()

    def on_event(self, event: Event) -> Event:
        if event.meta.get("frame") == self.hold:
            self.reached.set()
            self.release.wait(20)
        return event
