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


_UNSET: Any = object()  # meta not given (None is kept as given: the encoder refuses it)


def _one_of(meta: Any, other: dict[str, Any] | None, name: str) -> Any:
    """``meta`` or the same dict given by its other name (``data``, ``metadata``)."""
    if other is not None:
        if meta is not _UNSET:
            raise TypeError(f"give meta or {name}, not both (they are one dict)")
        return other
    return {} if meta is _UNSET else meta


class _RunMark(Message):
    """A Start or a Stop: metadata only; ``data`` is the same dict as ``meta``, by the name
    arroyopy's design gives it (``Start(data={...})``, ``stop.data``)."""

    def __init__(self, meta: dict[str, Any] = _UNSET, *,
                 data: dict[str, Any] | None = None) -> None:
        self.meta = _one_of(meta, data, "data")

    @property
    def data(self) -> dict[str, Any]:
        return self.meta

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        self.meta = value


@dataclass(eq=False, init=False)
class Start(_RunMark):
    """Opens a run; ``meta`` carries the run's metadata (shape, dtype, sample ...), also
    readable as ``data``."""

    kind = "start"


@dataclass(eq=False, init=False)
class Event(Message):
    """One datum of a run: metadata plus named numpy arrays or raw bytes.

    Arrays an operator receives are read-only: from the network, views on the received
    frames (zero-copy); in one process, read-only views of the source's arrays (the
    runtime makes them, so an operator behaves the same in both). Copy one before
    changing it in place.

    ``metadata`` is ``meta`` by the name arroyopy's design gives it (the same dict).
    """

    payload: dict[str, Payload] = field(default_factory=dict)
    kind = "event"

    def __init__(self, meta: dict[str, Any] = _UNSET, payload: dict[str, Payload] = _UNSET,
                 *, metadata: dict[str, Any] | None = None) -> None:
        self.meta = (_one_of(meta, metadata, "metadata") if metadata is not None
                     else {} if meta is _UNSET else meta)
        self.payload = {} if payload is _UNSET else payload

    @property
    def metadata(self) -> dict[str, Any]:
        return self.meta

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        self.meta = value

    @property
    def nbytes(self) -> int:
        total = 0
        for value in self.payload.values():  # a loop: this is on every message's path
            total += len(value) if isinstance(value, (bytes, bytearray)) else value.nbytes
        return total


@dataclass(eq=False, init=False)
class Stop(_RunMark):
    """Closes a run; ``meta`` carries the run's summary (e.g. frames sent), also readable
    as ``data``."""

    kind = "stop"


KINDS: dict[str, type[Message]] = {cls.kind: cls for cls in (Start, Event, Stop)}
