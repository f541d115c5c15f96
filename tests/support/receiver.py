"""A real ZmqListener running in a thread of the test process, collecting what it delivers."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from arroyo_core.link import ZmqListener
from arroyo_core.message import Message


class Receiver:
    """A real ZmqListener running in a thread, collecting what it delivers in a queue."""

    def __init__(self, endpoint: str, pattern: str = "pull", **options: Any) -> None:
        self.listener = ZmqListener(endpoint, pattern=pattern, **options)
        self.listener.open()
        self.messages: queue.Queue[Message] = queue.Queue()
        self.thread = threading.Thread(target=self.listener.start, args=(self.messages.put,),
                                       daemon=True)
        self.thread.start()

    @property
    def bound(self) -> str | None:
        """Where the listener listens, if it binds (a port the system picked filled in)."""
        return self.listener.status().bound

    def get(self, timeout: float = 20.0) -> Message:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing arrived within {timeout} s; ledger "
                                 f"{self.listener.stats()}") from None

    def take(self, count: int, timeout: float = 20.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        return [self.get(max(0.0, deadline - time.monotonic())) for _ in range(count)]

    def close(self) -> None:
        self.listener.stop()
        self.thread.join(timeout=5)
        self.listener.close()
