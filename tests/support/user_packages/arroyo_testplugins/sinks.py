"""User sinks run inside ``arroyo publisher`` services: one that checks that every run
arrived whole and in order (Start, Events with ``frame`` 0, 1, 2 ... and Stop), and a slow
live viewer."""

from __future__ import annotations

import threading
import time
from typing import Any

from arroyo_core.components import Publisher
from arroyo_core.message import Event, Message, Start, Stop


class OrderSink(Publisher):
    """Records, per run, the order in which messages came; ``stats()`` says what broke."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self.stray: list[str] = []  # messages outside a Start..Stop bracket
        self._lock = threading.Lock()  # stats() runs in the status thread

    def publish(self, message: Message) -> None:
        with self._lock:
            current = self.runs[-1] if self.runs and not self.runs[-1]["stopped"] else None
            if isinstance(message, Start):
                if current is not None:
                    self.stray.append("start inside an open run")
                self.runs.append({"run": message.meta.get("run"), "frames": 0,
                                  "out_of_order": [], "stopped": False, "frames_sent": None})
            elif current is None:
                self.stray.append(f"{message.kind} outside a run")
            elif isinstance(message, Event):
                if message.meta.get("run") != current["run"]:
                    self.stray.append("event of another run")
                expected = current["frames"]
                frame = message.meta.get("frame")
                if frame != expected and len(current["out_of_order"]) < 10:
                    current["out_of_order"].append([expected, frame])
                current["frames"] += 1
            elif isinstance(message, Stop):
                current["stopped"] = True
                current["frames_sent"] = message.meta.get("frames_sent")

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"link": "order sink", "runs": [dict(run) for run in self.runs],
                    "stray": list(self.stray)}


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
