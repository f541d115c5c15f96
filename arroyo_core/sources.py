"""Built-in sources: listeners that make data instead of receiving it."""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from .components import Deliver, Listener
from .errors import ConfigError
from .message import Event, Message, Start, Stop
from .status import LinkStatus


class SimulatedDetector(Listener):
    """Emits one run of detector frames: Start, ``frames`` Events, Stop.

    Frames are drawn from a small ring of pre-made arrays so that the source, like a real
    detector's DMA buffers, does not allocate (and page-fault) per frame. Each Event's
    metadata holds ``frame`` (its index in the run); Stop holds ``frames_sent``.

    Parameters
    ----------
    shape
        Of each frame, e.g. ``[512, 512]``.
    dtype
        Of each frame: a numpy dtype name such as ``uint16`` or ``float32``.
    frames
        How many frames in the run.
    rate
        Frames per second; 0 sends as fast as the chain takes them.
    runs
        How many runs to emit one after the other.
    ring
        How many distinct frames to cycle through.
    seed
        Of the random numbers the frames are made of.
    checksum
        Put ``crc32`` (zlib) of each frame's bytes in its metadata, so a checking sink
        (:class:`~arroyo_core.verify.VerifyingSink`) can prove nothing was corrupted.
    fresh
        Hand out a newly allocated copy of each frame instead of a ring buffer, like a
        detector that does not reuse its buffers; queued frames then really hold memory
        (for memory-budget tests).
    """

    def __init__(self, shape: Iterable[int] = (512, 512), dtype: str = "uint16",
                 frames: int = 100, rate: float = 10.0, runs: int = 1, ring: int = 4,
                 seed: int = 0, checksum: bool = False, fresh: bool = False) -> None:
        self.shape = tuple(int(n) for n in shape)
        if not self.shape or min(self.shape) < 1:
            raise ConfigError(f"option shape: expected a list of sizes of 1 or more, got {shape!r}")
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise ConfigError(f"option dtype: {dtype!r} is not a numpy dtype (e.g. uint16, "
                              "float32)") from None
        if self.dtype.kind not in "biufc":
            raise ConfigError(f"option dtype: expected a numeric dtype, got {dtype!r}")
        self.frames = _at_least("frames", frames, 0)
        self.rate = float(rate)
        if not self.rate >= 0:  # also refuses nan
            raise ConfigError(f"option rate: expected frames per second, 0 (as fast as the "
                              f"chain takes them) or more, got {rate!r}")
        self.runs = _at_least("runs", runs, 1)
        rng = np.random.default_rng(seed)
        high = 1000 if self.dtype.kind in "iu" else 1.0
        self.ring = [(rng.random(self.shape) * high).astype(self.dtype)
                     for _ in range(_at_least("ring", ring, 1))]
        for frame in self.ring:  # as an operator gets them: no read-only view per Event
            frame.flags.writeable = False
        # numpy's stubs give ndarray __buffer__ only for Python >= 3.12; it is a buffer
        self.crcs = ([zlib.crc32(frame) for frame in self.ring]  # type: ignore[arg-type]
                     if checksum else None)
        self.fresh = fresh
        self.sent = 0

    def start(self, deliver: Deliver) -> None:
        for _ in range(self.runs):
            if self.stop_requested.is_set():
                break
            self._run(deliver)

    def _run(self, deliver: Deliver) -> None:
        run_id = uuid.uuid4().hex
        deliver(Start({"run": run_id, "shape": list(self.shape), "dtype": self.dtype.str,
                       "frames": self.frames, "rate": self.rate, "source": "simulated",
                       "started": time.time(), **self.start_meta()}))
        period = 1.0 / self.rate if self.rate > 0 else 0.0
        began = time.monotonic()
        index = 0
        while index < self.frames and not self.stop_requested.is_set():
            if period:
                delay = began + index * period - time.monotonic()
                if delay > 0 and self.stop_requested.wait(delay):
                    break
            slot = index % len(self.ring)
            meta = {"run": run_id, "frame": index}
            if self.crcs is not None:
                meta["crc32"] = self.crcs[slot]
            image = self.ring[slot].copy() if self.fresh else self.ring[slot]
            deliver(Event(meta, {"image": image}))
            index += 1
            self.sent += 1  # counted as it goes: a status read mid-run shows it
        deliver(Stop({"run": run_id, "frames_sent": index,
                      "aborted": index < self.frames,
                      "seconds": time.monotonic() - began}))

    def start_meta(self) -> dict[str, Any]:
        """More metadata for each run's Start (a subclass describes its frames here)."""
        return {}

    def status(self) -> LinkStatus:
        return LinkStatus(name="simulated detector", direction="input", kind="source",
                          sent=self.sent)

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()


def _at_least(key: str, value: int, low: int) -> int:
    """``value`` if it is ``low`` or more, else a ConfigError naming the option ``key``."""
    if value < low:
        raise ConfigError(f"option {key}: expected {low} or more, got {value!r}")
    return int(value)


class MemoryListener(Listener):
    """Delivers a given list of messages, then ends: the in-memory twin for tests."""

    def __init__(self, messages: Iterable[Message]) -> None:
        self.messages = list(messages)

    def start(self, deliver: Deliver) -> None:
        for message in self.messages:
            if self.stop_requested.is_set():
                return
            deliver(message)
