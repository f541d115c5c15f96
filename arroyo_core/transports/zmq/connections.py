"""What happens to a link's connections, read from libzmq's socket monitor in a thread.

ZeroMQ connects, reconnects and refuses peers in the background and says nothing about it,
and libzmq allows one monitor per socket (a second ``zmq_socket_monitor`` replaces the
first). So a link has one :class:`ConnectionTracker`, which takes each monitor event once
and keeps everything a link needs to know about its connections:

- **peers**: the connections whose handshake succeeded and that are still open, so a link
  can wait for the peers it expects before it starts a run (:meth:`~ConnectionTracker.wait_for`);
  every disconnect and reconnect is logged as it happens (a killed peer: at once; a silent
  one: after the heartbeat timeout) and counted for the ledger.
- **refusals**: a handshake that fails (a peer without CURVE, with a wrong server key, or
  a client key the allow-list refuses) only closes the connection. Each one is counted by
  reason and logged once per reason and host, with the peer's address when still known.
- **drops**: a connection of ours that ends after its handshake and that libzmq does not
  retry (after a protocol error, most often a frame over the socket's ``MAXMSGSIZE``) would
  leave the link silent for good. It is counted, logged, and
  :meth:`~ConnectionTracker.reconnect_dropped` connects again; it also asks again, every
  ``RETRY_REFUSED_S``, a server that refused our key (its allow-list may change) and one
  whose connection closed before its handshake with no reason given, which libzmq does not
  retry either (``UNPAIRED_REASON``: a peer of the wrong socket type, or a TCP connection to
  itself, which a connect before the far end binds can make).
- **open connections**: each one's local and peer address, for a close that waits until
  every peer has read everything (:mod:`.handoff`).

libzmq's one I/O thread reports a failed handshake and then the disconnect of that same
connection, with nothing between (a peer that drops before its handshake ends with the
same pair): the disconnect names the connection, and so the peer, that failed. Only a
connection whose handshake succeeded is a peer.
"""

from __future__ import annotations

import errno
import logging
import os
import socket as pysocket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from ...transport import wait_for_count
from .handoff import recorded_addresses
from .reasons import AUTH_REASON, HANDSHAKE_REASONS, PROTOCOL_ERRORS, SELF_REASON, UNPAIRED_REASON

log = logging.getLogger(__name__)

RECONNECT_AFTER_S = 0.5  # a dropped connection libzmq has not retried by then stays dropped
# libzmq never retries a connection whose key the server refused; we do, this much later,
# so a client whose key is added to the server's allow-list gets in without a restart.
RETRY_REFUSED_S = 2.0
# A peer that closes right after its run's Stop may be noticed before the Stop is read
# from the socket: how long a disconnect mid-run waits for that Stop before it warns.
RUN_END_GRACE_S = 1.0
MAX_LOGGED = 1024  # (reason, host) pairs remembered as logged; counts are always exact

Addresses = tuple[object, object]  # (local, peer) address of one connection


def _shut_down(fd: int, peer: object) -> bool:
    """Shut down connection ``fd`` if it is still the one to ``peer`` (not a descriptor
    reused since); libzmq then closes it as if the peer had."""
    try:
        with pysocket.socket(fileno=os.dup(fd)) as sock:
            if sock.getpeername() == peer:
                sock.shutdown(pysocket.SHUT_RDWR)
                return True
    except OSError:
        pass  # closed meanwhile
    return False


def _peer_label(addresses: Addresses | None) -> str | None:
    """``host:port`` of a TCP connection's peer; None for other kinds or when unknown.

    libzmq 4.3's monitor names only the local endpoint of an accepted connection, so the
    peer is read from the descriptor when it opens; a peer refused at once may be gone first.
    """
    peer = addresses[1] if addresses is not None else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else None


class ConnectionTracker:
    """One link's connections: its peers, refused handshakes and dropped connections.

    Thread-safe: events arrive on the monitor thread; :meth:`wait_for`,
    :meth:`connections` and :meth:`stats` are called from others, and
    :meth:`reconnect_dropped` from the thread that uses the socket.

    Parameters
    ----------
    link
        The link's name, used in log lines.
    max_frame_bytes
        The socket's ``MAXMSGSIZE`` if it has one, named in the log line of a dropped
        connection because an oversized frame is its most common cause.
    peers_log_level
        Of the lines saying a peer came or left (a status endpoint's pollers come and go
        with every request: DEBUG). Refusals and mid-run losses are warnings whatever it is.
    """

    def __init__(self, link: str, max_frame_bytes: int | None = None,
                 peers_log_level: int = logging.INFO) -> None:
        self.link = link
        self.max_frame_bytes = max_frame_bytes
        self.peers_log_level = peers_log_level
        self.count = 0  # peers connected now (handshake done, not yet disconnected)
        self.connects = 0  # handshakes that succeeded, first ones included
        self.disconnects = 0  # peers lost (failed handshakes are not peers)
        self.reconnects = 0  # connects after a disconnect
        self.dropped = 0  # connections of ours libzmq closed and did not retry; each reconnected
        self.refused: Counter[str] = Counter()  # failed handshakes by reason
        self._changed = threading.Condition()  # guards all of the above and what follows
        self._lost_at: float | None = None  # when the link last lost its last peer
        self._in_run = False  # a run is open on the link (see run_state)
        self._runs_ended = 0  # runs whose Stop passed on the link
        self._dropped_at: float | None = None  # a connection of ours ended and was not retried
        self._refused_at: float | None = None  # the server refused our key (not retried)
        # Keyed by descriptor, so never more entries than the process has descriptors.
        self._open: dict[int, Addresses | None] = {}
        # Only the monitor thread reads and writes these:
        self._ours: int | None = None  # the connection this socket made (connect side)
        self._handshaken = False  # ... and whether its handshake succeeded
        self._self: int | None = None  # ... if it reached itself, being closed
        self._failed: str | None = None  # why a handshake failed, until its disconnect
        self._logged: set[tuple[str, str]] = set()
        self._thread: threading.Thread | None = None

    # --- the monitor thread ---------------------------------------------------------------

    def start(self, socket: zmq.Socket) -> None:
        """Watch ``socket``; call before it binds or connects, from the thread that owns it."""
        pipe = socket.get_monitor_socket()
        self._thread = threading.Thread(target=self._watch, args=(pipe,), daemon=True,
                                        name="arroyo-monitor")
        self._thread.start()

    def stop(self, socket: zmq.Socket) -> None:
        """Stop watching (before ``socket`` closes); the thread ends on MONITOR_STOPPED."""
        if self._thread is None:
            return
        try:
            socket.disable_monitor()
        except zmq.ZMQError:
            pass  # the socket is already closed, which stops its monitor as well
        self._thread.join(timeout=2)
        self._thread = None

    def _watch(self, pipe: zmq.Socket) -> None:
        try:
            while True:
                try:
                    event = recv_monitor_message(pipe)
                except zmq.ZMQError:
                    return  # the context is terminating
                if event["event"] == zmq.EVENT_MONITOR_STOPPED:
                    return
                self.on_event(event["event"], event["value"],
                              event["endpoint"].decode("utf-8", "replace"))
        finally:
            pipe.close(linger=0)

    def on_event(self, event: int, value: int, endpoint: str) -> None:
        """Take one monitor event (called on the monitor thread)."""
        failed, self._failed = self._failed, None
        if failed is not None and event != zmq.EVENT_DISCONNECTED:
            self._log_failure(failed, endpoint, None, None)  # its connection is unknown
        if event in (zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED):
            addresses = recorded_addresses(value)
            with self._changed:
                self._open[value] = addresses
                if event == zmq.EVENT_CONNECTED:
                    self._dropped_at = None
            if event == zmq.EVENT_CONNECTED:
                self._ours, self._handshaken = value, False
                if addresses is not None and addresses[0] == addresses[1]:
                    self._close_self(value, addresses[1], endpoint)
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            if self._ours is not None and self._ours == self._self:
                return  # not a peer: it is being closed
            self._handshaken = self._ours is not None
            if self._handshaken:
                with self._changed:
                    self._refused_at = None  # in: nothing to ask again
            self._peer_connected(endpoint)
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self._refuse(AUTH_REASON)
            if self._ours is not None:  # on a server, the ZAP handler logs it, with the key
                self._log_refusal(AUTH_REASON, f"the server at {endpoint} refused our key",
                                  endpoint)
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self._refuse(HANDSHAKE_REASONS.get(
                value, f"protocol error {PROTOCOL_ERRORS.get(value, hex(value))}"))
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            reason = f"handshake failed ({os.strerror(value)})"
            if value in (errno.EPIPE, errno.ECONNRESET):  # the peer gave up first
                reason += (": the peer closed the connection, often because its security "
                           "settings do not match (e.g. no CURVE)")
            self._refuse(reason)
        elif event == zmq.EVENT_DISCONNECTED:
            self._closed(value, endpoint, failed)
        elif event == zmq.EVENT_CONNECT_RETRIED:
            with self._changed:
                self._dropped_at = None  # libzmq reconnects this one itself

    def _refuse(self, reason: str) -> None:
        self._failed = reason  # the disconnect that follows ends a refusal, not a peer
        with self._changed:
            self.refused[reason] += 1

    def _close_self(self, fd: int, peer: object, endpoint: str) -> None:
        """Shut down our connection ``fd``, which reached itself; libzmq connects again."""
        self._self = fd
        with self._changed:
            self.refused[SELF_REASON] += 1
        self._log_refusal(SELF_REASON, f"the connection to {endpoint}", endpoint)
        _shut_down(fd, peer)

    def _closed(self, fd: int, endpoint: str, failed: str | None) -> None:
        ours, handshaken = fd == self._ours, self._handshaken
        if ours:
            self._ours, self._handshaken = None, False
        if fd == self._self:
            self._self, failed = None, SELF_REASON  # counted and logged as it came
        with self._changed:
            if ours and not handshaken and failed is None:
                failed = UNPAIRED_REASON
                self.refused[failed] += 1
            addresses = self._open.pop(fd, None)
            if ours and handshaken and failed is None:
                # cleared by CONNECT_RETRIED if libzmq retries; a refused handshake is
                # not retried by libzmq
                self._dropped_at = time.monotonic()
            elif ours and failed in (AUTH_REASON, UNPAIRED_REASON, SELF_REASON):
                self._refused_at = time.monotonic()
        if failed is not None:
            if failed != SELF_REASON:
                self._log_failure(failed, endpoint, ours, _peer_label(addresses))
        else:
            self._peer_lost(endpoint)

    def _peer_connected(self, endpoint: str) -> None:
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
            log.log(self.peers_log_level, "%s: peer connected again on %s%s; %d peer(s) now",
                    self.link, endpoint, after, count)
        else:
            log.log(self.peers_log_level, "%s: peer connected on %s; %d peer(s) now",
                    self.link, endpoint, count)

    def _peer_lost(self, endpoint: str) -> None:
        with self._changed:
            self.count = max(0, self.count - 1)
            self.disconnects += 1
            if self.count == 0:
                self._lost_at = time.monotonic()
            count, in_run, ended = self.count, self._in_run, self._runs_ended
            self._changed.notify_all()
        if not in_run:
            self._log_lost(endpoint, count, mid_run=False)
            return
        # Its run's Stop may still be on its way to our reader: look again later, off this
        # thread, which must go on taking events (a reconnect libzmq makes meanwhile).
        timer = threading.Timer(RUN_END_GRACE_S, self._log_lost_after_grace,
                                (endpoint, count, ended))
        timer.daemon = True
        timer.start()

    def _log_lost_after_grace(self, endpoint: str, count: int, ended: int) -> None:
        with self._changed:
            mid_run = self._runs_ended == ended  # the run open when it left has not ended
        self._log_lost(endpoint, count, mid_run)

    def _log_lost(self, endpoint: str, count: int, mid_run: bool) -> None:
        if mid_run:
            log.warning("%s: peer on %s disconnected mid-run (closed, crashed or silent past "
                        "the heartbeat timeout); %d peer(s) left", self.link, endpoint, count)
        else:
            log.log(self.peers_log_level, "%s: peer on %s disconnected between runs; %d "
                    "peer(s) left", self.link, endpoint, count)

    def _log_failure(self, reason: str, endpoint: str, ours: bool | None,
                     peer: str | None) -> None:
        """Log a failed handshake; ``ours`` is None when its connection is not known."""
        if reason == AUTH_REASON:
            return  # logged when it came (client) or by the ZAP handler, with the key (server)
        if ours is None:
            self._log_refusal(reason, f"a handshake on {endpoint} failed", "")
        elif ours:
            self._log_refusal(reason, f"the handshake with {endpoint} failed", endpoint)
        else:
            self._log_refusal(reason, f"refused a connection on {endpoint} from "
                              f"{peer or 'a peer gone before its address was read'}",
                              peer or "")

    def _log_refusal(self, reason: str, what: str, peer: str) -> None:
        host = peer.rsplit(":", 1)[0]
        if (reason, host) in self._logged:
            return
        if len(self._logged) < MAX_LOGGED:
            self._logged.add((reason, host))
        log.warning("%s: %s: %s; further ones of this kind are only counted",
                    self.link, what, reason)

    # --- the link's threads ---------------------------------------------------------------

    def run_state(self, in_run: bool) -> None:
        """A run started (True) or its Stop passed (False) on this link: a peer that
        leaves between runs ends normally, one that leaves mid-run is a loss to report."""
        with self._changed:
            if self._in_run and not in_run:
                self._runs_ended += 1
            self._in_run = in_run
            self._changed.notify_all()

    def wait_for(self, expected: int, timeout: float,
                 cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Block until ``expected`` peers are connected; False on ``timeout`` (0: never) or
        when ``cancelled()`` turns true. Logs while it waits."""
        with self._changed:
            return wait_for_count(lambda: self.count, expected, timeout,
                                  lambda: self._changed.wait(0.1), cancelled, self.link,
                                  "expected peer(s)")

    def connections(self) -> dict[int, Addresses]:
        """The link's open connections: descriptor -> (local, peer) address."""
        with self._changed:
            return {fd: addresses for fd, addresses in self._open.items()
                    if addresses is not None}

    def close_from(self, hosts: set[str]) -> int:
        """Shut down the open connections whose peer is one of ``hosts`` (IP addresses);
        libzmq then closes them as if the peer had. Returns how many."""
        return sum(_shut_down(fd, peer) for fd, (_, peer) in self.connections().items()
                   if isinstance(peer, tuple) and peer[0] in hosts)

    def reconnect_dropped(self, socket: zmq.Socket, address: str) -> None:
        """Connect to ``address`` again if libzmq dropped our connection and will not retry.

        Call from the thread that uses ``socket`` (ZeroMQ sockets are not thread-safe),
        when it is idle: a dropped link is an idle one. Never while a peer is connected:
        disconnecting cuts that connection, and discards what it delivered and was not
        yet read.
        """
        with self._changed:
            if self.count:  # connected (again, libzmq's doing): a disconnect would cut it
                self._dropped_at = self._refused_at = None
                return
            now, dropped_at, refused_at = time.monotonic(), self._dropped_at, self._refused_at
            ask_again = refused_at is not None and now - refused_at >= RETRY_REFUSED_S
            if ask_again:
                self._refused_at = None
            dropped = dropped_at is not None and now - dropped_at >= RECONNECT_AFTER_S
            if dropped:
                self._dropped_at = None
                self.dropped += 1
        if ask_again and not dropped:
            self._connect_again(socket, address)  # quietly: each refusal is counted
        if not dropped:
            return
        limit = (f" (a frame over the socket's MAXMSGSIZE of {self.max_frame_bytes} bytes?)"
                 if self.max_frame_bytes else "")
        log.warning("%s: libzmq closed the connection to %s after a protocol error%s and will "
                    "not retry; messages in flight on it are lost (see the ledger's missing "
                    "ranges); connecting again", self.link, address, limit)
        self._connect_again(socket, address)

    @staticmethod
    def _connect_again(socket: zmq.Socket, address: str) -> None:
        try:
            socket.disconnect(address)
        except zmq.ZMQError:
            pass  # libzmq has already forgotten the endpoint
        socket.connect(address)

    def stats(self) -> dict[str, Any]:
        with self._changed:
            return {"peers": {"peers": self.count, "connects": self.connects,
                              "disconnects": self.disconnects, "reconnects": self.reconnects},
                    "connections": {"dropped": self.dropped, "refused": dict(self.refused)}}
