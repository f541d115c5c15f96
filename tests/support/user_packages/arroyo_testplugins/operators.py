"""User operators that the integration tests run inside ``arroyo operator`` services."""

from __future__ import annotations

import datetime
from typing import Any

import numpy as np

from arroyo_core.components import Operator, Results
from arroyo_core.message import Event


class Flaky(Operator):
    """Raises ``ValueError(message)`` on every Event whose ``frame`` is a multiple of
    ``every``, and stamps its keyword arguments into the others' metadata so a test can
    see how ``-o key=value`` arrived (type and value).
    """

    def __init__(self, every: int = 3, message: str = "boom", scale: float = 1.0,
                 tags: list[Any] | None = None) -> None:
        super().__init__()
        self.every = every
        self.message = message
        self.scale = scale
        self.tags = tags

    def on_event(self, event: Event) -> Results:
        frame = event.meta["frame"]
        if frame % self.every == 0:
            raise ValueError(f"{self.message} at frame {frame}")
        meta = {**event.meta, "every": self.every, "message": self.message,
                "scale": self.scale, "tags": self.tags,
                "arg_types": [type(v).__name__ for v in (self.every, self.message, self.scale)]}
        payload = {name: np.asarray(value) * self.scale for name, value in event.payload.items()}
        return Event(meta, payload)


class Misbehaving(Operator):
    """Gets one thing wrong on every Event, as ``mistake`` says: returns a ``dict`` or an
    ``array`` instead of an Event, ``mutate``\\ s its input array in place, or puts a
    ``datetime`` in the metadata. Start and Stop pass through."""

    def __init__(self, mistake: str = "dict") -> None:
        super().__init__()
        self.mistake = mistake

    def on_event(self, event: Event) -> Results:
        image = event.payload["image"]
        if self.mistake == "dict":
            return {"centre": np.array([1.0, 2.0])}  # type: ignore[return-value]
        if self.mistake == "array":
            return image * 2  # type: ignore[return-value]
        if self.mistake == "mutate":
            image[0, 0] = 0  # read-only, as received: ValueError
            return event
        if self.mistake == "datetime":
            return Event({**event.meta, "when": datetime.datetime(2026, 1, 1)}, event.payload)
        raise AssertionError(f"no mistake called {self.mistake!r}")


class DropOdd(Operator):
    """Returns None for every Event with an odd ``frame``: filtered, not lost."""

    def on_event(self, event: Event) -> Results:
        return None if event.meta["frame"] % 2 else event


class Busy(Operator):
    """Spends ``ms`` milliseconds of CPU on every Event (a slow analysis step), then passes
    it on: what a pool of workers is for."""

    def __init__(self, ms: float = 5.0) -> None:
        super().__init__()
        self.seconds = ms / 1000

    def on_event(self, event: Event) -> Results:
        import time

        end = time.thread_time() + self.seconds
        while time.thread_time() < end:
            pass
        return event


class Slow(Operator):
    """Waits ``ms`` milliseconds on every Event (an operator that awaits a file store or a
    database, without using the CPU), then passes it on."""

    def __init__(self, ms: float = 5.0) -> None:
        super().__init__()
        self.seconds = ms / 1000

    def on_event(self, event: Event) -> Results:
        import time

        time.sleep(self.seconds)
        return event
