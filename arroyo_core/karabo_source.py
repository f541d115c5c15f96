"""The karabo-bridge listener: European XFEL's data stream as Arroyo runs.

::

    arroyo listener --source karabo-bridge -o endpoint=tcp://exflong:4545 --out '@tcp://*:5555'

A karabo-bridge has no notion of a run, so this listener makes them: a run starts with the
first train, and ends (a Stop) when no train came for ``idle_timeout`` seconds, when the
train id goes back (the bridge restarted) or when the set of sources changes; the next
train then starts a new run. Each train is one Event: one array per source and key, named
``source/key`` (Karabo keys use dots, never slashes), and metadata::

    run, frame      the run's id; train id minus the run's first train id
    train_id        the train's id (from the sources' ``timestamp.tid``)
    sources         the source names
    timestamp       of the first source that has one (Unix seconds)
    karabo          {source: {"metadata": ..., "values": ...}}: the bridge's own
                    metadata and the values that are not arrays

Because ``frame`` follows the train id, trains the listener did not get (a PUB bridge
that dropped them, or a REQ bridge that sends the newest train when asked, so a slow
client skips some) show as missing frames in every ledger downstream, and in this
listener's own ledger as missing train ids.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from .components import Deliver, Listener
from .errors import ConfigError, DecodeError
from .karabo_format import PROTOCOLS, Train, decode_train
from .message import Event
from .numbered_runs import NumberedRuns, Run
from .status import LinkStatus

log = logging.getLogger(__name__)

PATTERNS = {"REQ": zmq.REQ, "SUB": zmq.SUB, "PULL": zmq.PULL}
POLL_MS = 100  # how often the loop looks at its stop flag and its idle time


class KaraboBridgeListener(Listener):
    """Receives trains from a karabo-bridge server and delivers one Event per train.

    Parameters
    ----------
    endpoint
        The bridge's address, e.g. ``tcp://host:4545`` (connected).
    pattern
        ``REQ`` (default; sends ``next`` for each train, as ``karabo_bridge.Client`` does),
        ``SUB`` (a PUB bridge) or ``PULL`` (a PUSH bridge).
    protocol
        ``2.2``, ``1.0`` or ``auto`` (default: a one-frame message is 1.0, else 2.2). A
        message of another version is counted as malformed.
    idle_timeout
        Seconds without a train after which the run ends (a Stop). On REQ, a ``next`` is
        asked again only of a bridge that reconnected (it never answers the one sent to
        its predecessor), never of a slow one: the answer to the older request would be
        thrown away, and a train with it.
    hwm
        Trains the socket queues.
    """

    def __init__(self, endpoint: str, pattern: str = "REQ", protocol: str = "auto",
                 idle_timeout: float = 10.0, hwm: int = 2) -> None:
        if not isinstance(endpoint, str) or "://" not in endpoint:
            raise ConfigError(f"option endpoint: expected an address such as "
                              f"tcp://host:4545, got {endpoint!r}")
        self.endpoint = endpoint
        self.pattern = str(pattern).upper()
        if self.pattern not in PATTERNS:
            raise ConfigError(f"option pattern: {pattern!r} is not one of {sorted(PATTERNS)}")
        self.protocol = str(protocol)
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"option protocol: {protocol!r} is not one of {list(PROTOCOLS)}")
        self.idle_timeout = float(idle_timeout)
        if not self.idle_timeout > 0:
            raise ConfigError(f"option idle_timeout: expected seconds > 0, got {idle_timeout!r}")
        self.hwm = int(hwm)
        link = f"input karabo-bridge {self.pattern} {endpoint}"
        self.numbered = NumberedRuns(link, endpoint, "trains", "sources changed")
        self.ledger = self.numbered.ledger
        self.requests = 0  # ``next`` sent (REQ)
        self.socket: zmq.Socket | None = None

    def open(self) -> None:
        socket: zmq.Socket = zmq.Context.instance().socket(PATTERNS[self.pattern])
        socket.linger = 0
        socket.rcvhwm = self.hwm
        if self.pattern == "SUB":
            socket.subscribe(b"")
        elif self.pattern == "REQ":
            # a request may be sent again when its answer is overdue, and only the answer
            # to the latest one is taken
            socket.setsockopt(zmq.REQ_RELAXED, 1)
            socket.setsockopt(zmq.REQ_CORRELATE, 1)
        try:
            socket.connect(self.endpoint)
        except zmq.ZMQError as exc:
            socket.close()
            raise ConfigError(f"option endpoint: cannot connect to {self.endpoint!r}: "
                              f"{exc}") from None
        self.socket = socket

    def start(self, deliver: Deliver) -> None:
        socket = self.socket
        assert socket is not None, "open() first"
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        # On REQ, a bridge that went away took the pending ``next`` with it: the
        # connection's events say when to ask the one that comes back (at once, rather
        # than after idle_timeout).
        events = (socket.get_monitor_socket(zmq.EVENT_DISCONNECTED
                                            | zmq.EVENT_HANDSHAKE_SUCCEEDED)
                  if self.pattern == "REQ" else None)
        if events is not None:
            poller.register(events, zmq.POLLIN)
        try:
            self._receive(socket, events, poller, deliver)
        finally:
            if events is not None:
                socket.disable_monitor()
                events.close(linger=0)
        if self.numbered.run is not None:
            self.numbered.end(deliver, "stopped")

    def _receive(self, socket: zmq.Socket, events: zmq.Socket | None, poller: zmq.Poller,
                 deliver: Deliver) -> None:
        asking = self.pattern == "REQ"
        want = asking  # a ``next`` to send (never blocking: a REQ with no peer would wait)
        peer_lost = False
        heard = time.monotonic()
        while not self.stop_requested.is_set():
            if want and self._ask(socket):
                want = False
            ready = dict(poller.poll(POLL_MS))
            if events is not None and events in ready:
                if recv_monitor_message(events)["event"] == zmq.EVENT_DISCONNECTED:
                    peer_lost = True
                elif peer_lost:  # a bridge is back: ask it
                    want, peer_lost = True, False
            if socket not in ready:
                if (self.numbered.run is not None
                        and time.monotonic() - heard > self.idle_timeout):
                    self.numbered.end(deliver, "idle")
                continue
            frames = socket.recv_multipart(copy=False)
            # ask at once: the bridge makes the next train while this one is delivered
            want = asking and not self._ask(socket)
            try:
                train = decode_train(frames, self.protocol)
            except DecodeError as exc:
                self.ledger.reject(exc.reason, str(exc))
                continue
            heard = time.monotonic()
            self._train(train, deliver)

    def _ask(self, socket: zmq.Socket) -> bool:
        try:
            socket.send(b"next", zmq.NOBLOCK)
        except zmq.Again:
            return False
        self.requests += 1
        return True

    def _train(self, train: Train, deliver: Deliver) -> None:
        run = self.numbered.enter(train.train_id, train.sources, deliver,
                                  lambda run: self._start_meta(run, train))
        if run is not None:
            self.numbered.deliver(deliver, Event(event_meta(run, train), train.arrays))

    def _start_meta(self, run: Run, train: Train) -> dict[str, Any]:
        arrays = {name: [value.dtype.str, list(value.shape)]
                  for name, value in train.arrays.items() if isinstance(value, np.ndarray)}
        return {"run": run.id, "source": "karabo-bridge", "endpoint": self.endpoint,
                "pattern": self.pattern, "protocol": train.protocol, "sources": run.kind,
                "first_train": train.train_id, "arrays": arrays, "started": time.time()}

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def status(self) -> LinkStatus:
        record = self.ledger.status(address=self.endpoint, kind="source", scheme="karabo-bridge",
                                    run_ledger=self.numbered.runs.status())
        return record.with_transport({"pattern": self.pattern.lower(), "requests": self.requests,
                                      "protocol": self.protocol})

    def stats(self) -> dict[str, Any]:
        return self.status().to_dict()


def event_meta(run: Run, train: Train) -> dict[str, Any]:
    """An Event's metadata: the train's number in the run, and its sources' metadata and
    values."""
    timestamp = next((m["timestamp"] for m in train.metadata.values()
                      if isinstance(m.get("timestamp"), float)), None)
    meta = {"run": run.id, "frame": train.train_id - run.first, "train_id": train.train_id,
            "sources": run.kind,
            "karabo": {source: {"metadata": train.metadata[source],
                                "values": train.values.get(source, {})}
                       for source in run.kind}}
    if timestamp is not None:
        meta["timestamp"] = timestamp
    return meta
