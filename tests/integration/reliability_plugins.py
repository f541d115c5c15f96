"""Test-only plug-ins for the reliability tests, loaded by services as
``reliability_plugins:SlowSink`` (``harness.plugin_env()`` puts this directory on the path)."""

from __future__ import annotations

import threading
import time
from typing import Any

from arroyo_core.components import Publisher
from arroyo_core.message import Event, Message, Start, Stop


class SlowSink(Publisher):
    """Takes ``delay`` seconds per Event (sleeping, so the receiving thread still runs), and
    remembers which frames it was given, like a live viewer that redraws slowly."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.frames: list[int] = []
        self.stop_meta: dict[str, Any] | None = None
        self.started = False
        self._lock = threading.Lock()

    def publish(self, message: Message) -> None:
        if isinstance(message, Event):
            time.sleep(self.delay)
            with self._lock:
                self.frames.append(message.meta.get("frame", -1))
        elif isinstance(message, Start):
            self.started = True
        elif isinstance(message, Stop):
            with self._lock:
                self.stop_meta = dict(message.meta)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"link": "slow sink", "shown": len(self.frames),
                    "last_frame": self.frames[-1] if self.frames else None,
                    "in_order": self.frames == sorted(self.frames),
                    "started": self.started, "stop": self.stop_meta}
