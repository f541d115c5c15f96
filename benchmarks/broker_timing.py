"""What the broker hop benchmarks (redis_hop.py, amqp_hop.py) share: the source frames, and
an Arroyo input link read by a runtime into a sink that times the Events between the first
and the last, fed by a producer process the caller starts."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from arroyo_core.components import Publisher
from arroyo_core.link import InputLink
from arroyo_core.message import Event, Message, Stop
from arroyo_core.operators import PassThrough
from arroyo_core.runtime import Runtime

DTYPE = np.dtype("uint16")
RING = 4  # pre-made source frames, as SimulatedDetector keeps


def ring(shape: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 1000, shape, dtype=DTYPE) for _ in range(RING)]


class TimingSink(Publisher):
    """Times events between the first and the last; sets ``done`` at Stop."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.count = 0
        self.done = threading.Event()

    def publish(self, message: Message) -> None:
        if isinstance(message, Event):
            self.last = time.perf_counter()
            if self.first is None:
                self.first = self.last
            self.count += 1
        elif isinstance(message, Stop):
            self.done.set()


def rate(first: float | None, last: float | None, count: int, nbytes: int) -> dict[str, Any]:
    seconds = (last - first) if first is not None and last is not None else 0.0
    per_s = (count - 1) / seconds if seconds > 0 else 0.0
    return {"count": count, "msgs_per_s": per_s, "mb_per_s": per_s * nbytes / 1e6}


def time_arroyo(address: str, start_producer: Callable[[], subprocess.Popen[bytes]],
                nbytes: int) -> tuple[dict[str, Any], int]:
    """The rate at which a runtime reading ``address`` takes a producer's Events of
    ``nbytes``, and how many it took."""
    sink = TimingSink()
    runtime = Runtime(InputLink(address), PassThrough(), [sink])
    runtime.open()
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    producer = start_producer()
    if not sink.done.wait(300):
        raise RuntimeError("the Arroyo run did not finish")
    runtime.stop()
    thread.join(30)
    producer.wait(30)
    return rate(sink.first, sink.last, sink.count, nbytes), sink.count
