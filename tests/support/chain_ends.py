"""A chain's first and last hop in the test process: a Feeder (a ZmqPublisher sending one
run from a thread) and a FrameSink (a raw PULL socket and ``wire.decode``, no Arroyo
ledger), so that what a chain of services lost is counted by code that shares nothing with
the services' own ledgers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from arroyo_core.batch import decode_all
from arroyo_core.link import ZmqPublisher
from arroyo_core.message import Event, Start, Stop
from arroyo_core.wire import DEFAULT_LIMITS


class FrameSink:
    """The chain's last hop, in the test process: a PULL socket recording each message.
    It binds ``address``, or connects to it if it starts with ``>``."""

    def __init__(self, zmq_socket: Callable[[int], zmq.Socket], address: str,
                 services: list[Any]) -> None:
        self.socket = zmq_socket(zmq.PULL)
        if address.startswith(">"):
            self.socket.connect(address[1:])
        else:
            self.socket.bind(address)
        self.services = services  # whose output a failure shows
        self.frames: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self.stop_meta: dict[str, Any] | None = None

    def starter(self, service: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap the ``service`` factory so that this sink shows what they logged."""
        def start(*args: Any, **kwargs: Any) -> Any:
            self.services.append(service(*args, **kwargs))
            return self.services[-1]
        return start

    def pump(self, until: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name}:\n" + "\n".join(list(p.lines)[-15:])
                                  for p in self.services)
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                     f"got {self.kinds}\n{tails}")
            if self.socket.poll(20):
                for message, _ in decode_all(self.socket.recv_multipart(copy=False),
                                             DEFAULT_LIMITS):
                    self.kinds[message.kind] += 1
                    if isinstance(message, Event):
                        self.frames[message.meta["frame"]] += 1
                    elif isinstance(message, Stop):
                        self.stop_meta = message.meta


class Feeder:
    """The chain's first hop, in the test process: a ZmqPublisher sending one run (Start,
    ``frames`` Events stamped with ``frame``, Stop) at ``rate`` from a thread.

    It stays connected until teardown: a source service that exits right after its run
    can lose the run's tail on its own ZeroMQ hop when the next hop is slow, which is not
    what these tests are about.
    """

    def __init__(self, address: str, frames: int, rate: float) -> None:
        self.publisher = ZmqPublisher("@" + address, linger_ms=0)
        self.publisher.open()
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(frames, rate), daemon=True)
        self.thread.start()

    def _run(self, frames: int, rate: float) -> None:
        image = np.arange(256, dtype=np.uint16).reshape(16, 16)
        self.publisher.publish(Start({"run": "r"}))
        began = time.monotonic()
        for frame in range(frames):
            if self.halt.wait(max(0.0, began + frame / rate - time.monotonic())):
                return  # (the wait paces the run; it is not waiting out a race)
            self.publisher.publish(Event({"run": "r", "frame": frame}, {"image": image}))
        self.publisher.publish(Stop({"run": "r", "frames_sent": frames}))

    def close(self) -> None:
        self.halt.set()
        self.publisher.abandon()
        self.thread.join(10)
        self.publisher.close()
