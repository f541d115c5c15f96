"""Simulated streams of one scan, for event building: a detector's images, a fluorescence
detector's spectra and a position encoder's records, each a function of the frame number
(so a test can check every part of a built event against what its source must have sent).

Every stream of one scan stamps the same ``run`` id (a control system names the scan), and
each can skip frames (a detector that misses triggers) or start late.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np

from .components import Deliver, Listener
from .errors import ConfigError
from .message import Event, Start, Stop
from .status import LinkStatus

KINDS = ("image", "spectrum", "encoder")
ENCODER_FIELDS = 8  # float64 values per encoder record: 64 bytes


def spectrum(frame: int, channels: int) -> np.ndarray:
    """The spectrum of ``frame``: ``(channel * (frame + 1)) % 65521`` as uint32."""
    return (np.arange(channels, dtype=np.uint64) * (frame + 1) % 65521).astype(np.uint32)


def encoder(frame: int) -> np.ndarray:
    """The encoder record of ``frame``: ``frame + k / 8`` for k in 0..7, float64."""
    return frame + np.arange(ENCODER_FIELDS, dtype=np.float64) / ENCODER_FIELDS


class SimulatedStream(Listener):
    """One run of one stream of a scan: Start, an Event per frame not skipped, Stop.

    Parameters
    ----------
    kind
        ``image`` (``image``: one of ``ring`` random frames, ``frame % ring``, plus
        ``frame_id``: the frame number as one uint64), ``spectrum`` (``spectrum``:
        ``channels`` uint32 values, :func:`spectrum`) or ``encoder`` (``position``: 64
        bytes, :func:`encoder`).
    frames
        Frames in the run, skipped ones included.
    rate
        Frames per second (0: as fast as the chain takes them).
    run
        The run id every stream of the scan stamps (default: a new one).
    shape, dtype, ring, seed
        Of the images.
    channels
        Of a spectrum.
    skip_every, skip
        Leave out every frame whose number is ``skip_every - 1`` modulo ``skip_every``
        (0: none), and the frames listed in ``skip``.
    delay
        Seconds to wait before the run's Start (a stream that starts late).
    """

    def __init__(self, kind: str = "image", frames: int = 100, rate: float = 10.0,
                 run: str | None = None, shape: Iterable[int] = (64, 64),
                 dtype: str = "uint16", ring: int = 4, seed: int = 0, channels: int = 1024,
                 skip_every: int = 0, skip: Iterable[int] = (), delay: float = 0.0) -> None:
        if kind not in KINDS:
            raise ConfigError(f"option kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        if frames < 0 or rate < 0 or skip_every < 0 or delay < 0 or channels < 1:
            raise ConfigError("options frames, rate, skip_every, delay: expected 0 or more; "
                              "channels: 1 or more")
        self.kind = kind
        self.frames = int(frames)
        self.rate = float(rate)
        self.run = run or uuid.uuid4().hex
        self.channels = int(channels)
        self.skip_every = int(skip_every)
        self.skip = {int(n) for n in skip}
        self.delay = float(delay)
        self.ring: list[np.ndarray] = []
        if kind == "image":
            rng = np.random.default_rng(seed)
            shape = tuple(int(n) for n in shape)
            self.ring = [(rng.random(shape) * 1000).astype(dtype) for _ in range(int(ring))]
        self.sent = 0
        self.skipped = 0

    def skips(self, frame: int) -> bool:
        """Whether this stream leaves ``frame`` out."""
        every = self.skip_every
        return frame in self.skip or (every > 0 and frame % every == every - 1)

    def payload(self, frame: int) -> dict[str, Any]:
        if self.kind == "image":
            return {"image": self.ring[frame % len(self.ring)],
                    "frame_id": np.array([frame], dtype=np.uint64)}
        if self.kind == "spectrum":
            return {"spectrum": spectrum(frame, self.channels)}
        return {"position": encoder(frame)}

    def start(self, deliver: Deliver) -> None:
        if self.delay and self.stop_requested.wait(self.delay):
            return
        deliver(Start({"run": self.run, "source": f"simulated {self.kind}",
                       "frames": self.frames, "started": time.time()}))
        period = 1.0 / self.rate if self.rate > 0 else 0.0
        began = time.monotonic()
        frame = 0
        while frame < self.frames and not self.stop_requested.is_set():
            if period:
                wait = began + frame * period - time.monotonic()
                if wait > 0 and self.stop_requested.wait(wait):
                    break
            if self.skips(frame):
                self.skipped += 1
            else:
                deliver(Event({"run": self.run, "frame": frame}, self.payload(frame)))
                self.sent += 1
            frame += 1
        deliver(Stop({"run": self.run, "frames_sent": frame, "aborted": frame < self.frames,
                      "skipped": self.skipped}))

    def status(self) -> LinkStatus:
        return LinkStatus(name=f"simulated {self.kind}", direction="input", kind="source",
                          sent=self.sent, transport={"skipped": self.skipped})
