"""The three kinds of message a run is made of: Start, then Events, then Stop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Payload = np.ndarray | bytes | bytearray | memoryview


@dataclass(eq=False)
class Message:
    """Base of every Arroyo message; ``meta`` is a msgpack-serialisable dict."""

    meta: dict[str, Any] = field(default_factory=dict)
    kind = "message"

    @property
    def nbytes(self) -> int:
        """Payload bytes the message holds: what bounds a queue and what a sink's rate
        counts (the header is small and not counted; only an Event has a payload)."""
        return 0


@dataclass(eq=False)
class Start(Message):
    """Opens a run; ``meta`` carries the run's metadata (shape, dtype, sample ...)."""

    kind = "start"


@dataclass(eq=False)
class Event(Message):
    """One datum of a run: metadata plus named numpy arrays or raw bytes.

    Arrays an operator receives are read-only: from the network, views on the received
    frames (zero-copy); in one process, read-only views of the source's arrays (the
    runtime makes them, so an operator behaves the same in both). Copy one before
    changing it in place.
    """

    payload: dict[str, Payload] = field(default_factory=dict)
    kind = "event"

    @property
    def nbytes(self) -> int:
        total = 0
        for value in self.payload.values():  # a loop: this is on every message's path
            total += len(value) if isinstance(value, (bytes, bytearray)) else value.nbytes
        return total


@dataclass(eq=False)
class Stop(Message):
    """Closes a run; ``meta`` carries the run's summary (e.g. frames sent)."""

    kind = "stop"


KINDS: dict[str, type[Message]] = {cls.kind: cls for cls in (Start, Event, Stop)}
