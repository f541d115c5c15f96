"""The newest frame of a stream, kept small, for a live view to draw when it likes.

:meth:`Latest.take` runs on the service's processing thread for every Event: it copies
only a decimated image (at most ``max_side`` pixels a side) and decimated 1-D arrays (at
most ``max_points``), so a 16 MiB frame costs a small copy and never ties up the received
buffers. Readers (the web server's thread) get a consistent :class:`Snapshot` under a lock
and do their slow work (colour maps, PNG) from it, at their own pace.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..message import Event, Message, Start, Stop


@dataclass
class Snapshot:
    """What a live view shows: the latest image and 1-D arrays, run and frame numbers."""

    version: int = 0  # counts the events taken: a reader redraws when it changes
    run: str | None = None
    frame: Any = None  # the source's frame number of the latest event
    frames: int = 0  # events taken in the current run
    total: int = 0  # events taken since the view started
    bytes: int = 0  # their payload bytes
    running: bool = False  # between a run's Start and Stop
    image_name: str | None = None
    image: np.ndarray | None = None  # decimated copy
    image_shape: tuple[int, ...] = ()  # of the array as it arrived
    plots: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)  # scalars of the payload
    meta: dict[str, Any] = field(default_factory=dict)  # plain scalars of the event's meta


def _plain(meta: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in meta.items()
            if isinstance(value, (int, float, str, bool)) and len(str(value)) < 80}


class Latest:
    """Keeps a :class:`Snapshot` of the newest event (see the module docstring).

    Parameters
    ----------
    image
        Name of the payload array to show as the image; by default the first one with two
        or more dimensions (of more, the first 2-D slice).
    max_side
        Largest side of the image kept, in pixels: bigger arrays are decimated (strided).
    max_points
        Most points kept of a 1-D array.
    """

    def __init__(self, image: str | None = None, max_side: int = 1024,
                 max_points: int = 2048) -> None:
        self.image = image
        self.max_side = max(1, int(max_side))
        self.max_points = max(2, int(max_points))
        self._lock = threading.Lock()
        self._now = Snapshot()
        self._history: deque[tuple[float, int, int]] = deque(maxlen=64)

    def take(self, message: Message) -> None:
        """Keep what a view needs of ``message`` (any Start, Event or Stop)."""
        if isinstance(message, Start):
            with self._lock:
                self._now.run = str(message.meta.get("run"))
                self._now.frames = 0
                self._now.running = True
            return
        if isinstance(message, Stop):
            with self._lock:
                self._now.running = False
            return
        if not isinstance(message, Event):
            return
        image_name, image, shape, plots, values = None, None, (), {}, {}
        for name, value in message.payload.items():
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
                continue  # bytes, text, complex: nothing to draw
            if value.ndim >= 2 and image is None and self.image in (None, name):
                image_name, shape = name, value.shape
                plane = value[(0,) * (value.ndim - 2)]
                step = math.ceil(max(plane.shape) / self.max_side)
                image = np.array(plane[::step, ::step])  # a copy: the frame is not kept
            elif value.ndim == 1 and value.size > 1:
                step = math.ceil(value.size / self.max_points)
                plots[name] = np.array(value[::step], dtype=np.float64)
            elif value.size == 1:
                values[name] = float(value.reshape(-1)[0])
        run = message.meta.get("run")
        with self._lock:
            now = self._now
            now.version += 1
            now.frames += 1
            now.total += 1
            now.bytes += message.nbytes
            now.frame = message.meta.get("frame")
            now.meta = _plain(message.meta)
            if run is not None:
                now.run = str(run)
            if image is not None:
                now.image_name, now.image, now.image_shape = image_name, image, shape
            now.plots, now.values = plots, values

    def snapshot(self) -> Snapshot:
        """A copy of the current state (the arrays themselves are never changed after)."""
        with self._lock:
            now = self._now
            return Snapshot(**{**now.__dict__, "plots": dict(now.plots),
                               "values": dict(now.values)})

    def rates(self) -> tuple[float, float]:
        """(events/s, MB/s) over the last few seconds, from the calls to this method."""
        snap = self.snapshot()
        at = time.monotonic()
        with self._lock:
            history = self._history
            while len(history) > 1 and at - history[0][0] > 3.0:
                history.popleft()
            history.append((at, snap.total, snap.bytes))
            then, total, nbytes = history[0]
        if at - then < 0.2:
            return 0.0, 0.0
        return (snap.total - total) / (at - then), (snap.bytes - nbytes) / (at - then) / 1e6
