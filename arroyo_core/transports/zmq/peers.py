"""Which peers a link has right now, from its socket monitor's events.

ZeroMQ connects and reconnects in the background and says nothing about it: a PUSH socket
hands the first messages of a run to whichever puller happened to connect first, and a
dead peer goes unnoticed. :class:`PeerTracker` is fed the link's monitor events (through
:class:`~arroyo_core.transports.zmq.monitor.SocketMonitor`, the one monitor a socket
may have) and

- counts the peers whose handshake succeeded and that are still connected, so a link can
  wait for the peers it expects before it starts a run (:meth:`PeerTracker.wait_for`);
- logs every disconnect and every reconnect as it happens (a killed peer: at once; a
  silent one: after the heartbeat timeout), and counts them for the ledger.

libzmq 4.3 reports a failed handshake and then the disconnect of that same connection,
and a peer that drops before its handshake ends with the same pair; only a connection
whose handshake succeeded is a peer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from ...transport import wait_for_count
from .handoff import recorded_addresses

log = logging.getLogger(__name__)

_FAILED = {zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH,
           zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}


class PeerTracker:
    """Counts a link's connected peers and logs when one goes or comes back.

    Thread-safe: events arrive on the monitor thread, :meth:`wait_for` and :meth:`stats`
    are called from others.
    """

    def __init__(self, link: str) -> None:
        self.link = link
        self.count = 0  # peers connected now (handshake done, not yet disconnected)
        self.connects = 0  # handshakes that succeeded, first ones included
        self.disconnects = 0  # peers lost (failed handshakes are not peers)
        self.reconnects = 0  # connects after a disconnect
        self._pending_failures = 0
        self._lost_at: float | None = None  # when the link last lost its last peer
        self._fds: dict[int, tuple[object, object]] = {}  # connection fd -> addresses
        self._changed = threading.Condition()

    def on_event(self, event: int, value: int, endpoint: str) -> None:
        """Take one monitor event (called on the monitor thread)."""
        if event in (zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED):
            addresses = recorded_addresses(value)  # for a Handoff when the link closes
            if addresses is not None:
                with self._changed:
                    self._fds[value] = addresses
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._connected(endpoint)
        elif event in _FAILED:
            with self._changed:
                self._pending_failures += 1
        elif event == zmq.EVENT_DISCONNECTED:
            with self._changed:
                self._fds.pop(value, None)
            self._disconnected(endpoint)

    def _connected(self, endpoint: str) -> None:
        with self._changed:
            self.count += 1
            self.connects += 1
            again = self.disconnects > 0
            if again:
                self.reconnects += 1
            down_s = time.monotonic() - self._lost_at if self._lost_at is not None else None
            self._lost_at = None
            count = self.count
            self._changed.notify_all()
        if again:
            after = f" after {down_s:.1f} s without peers" if down_s is not None else ""
            log.info("%s: peer connected again on %s%s; %d peer(s) now", self.link, endpoint,
                     after, count)
        else:
            log.info("%s: peer connected on %s; %d peer(s) now", self.link, endpoint, count)

    def _disconnected(self, endpoint: str) -> None:
        with self._changed:
            if self._pending_failures:
                self._pending_failures -= 1  # the end of a refused connection, not a peer
                return
            self.count = max(0, self.count - 1)
            self.disconnects += 1
            if self.count == 0:
                self._lost_at = time.monotonic()
            count = self.count
            self._changed.notify_all()
        log.warning("%s: peer on %s disconnected (closed, crashed or silent past the heartbeat "
                    "timeout); %d peer(s) left", self.link, endpoint, count)

    def wait_for(self, expected: int, timeout: float,
                 cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Block until ``expected`` peers are connected; False on ``timeout`` (0: never) or
        when ``cancelled()`` turns true. Logs while it waits."""
        with self._changed:
            return wait_for_count(lambda: self.count, expected, timeout,
                                  lambda: self._changed.wait(0.1), cancelled, self.link,
                                  "expected peer(s)")

    def connections(self) -> dict[int, tuple[object, object]]:
        """The link's open connections: descriptor -> (local, peer) address."""
        with self._changed:
            return dict(self._fds)

    def stats(self) -> dict[str, Any]:
        with self._changed:
            return {"peers": self.count, "connects": self.connects,
                    "disconnects": self.disconnects, "reconnects": self.reconnects}
