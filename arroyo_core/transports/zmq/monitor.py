"""What happens to a link's connections, from libzmq's socket monitor, watched in a thread.

libzmq allows one monitor per socket (a second ``zmq_socket_monitor`` replaces the first),
so whatever in Arroyo needs a socket's connection events reads them here, through the
link's one :class:`SocketMonitor`, instead of calling ``socket.get_monitor_socket`` itself.

Two things libzmq does quietly that this module makes visible:

- A handshake that fails (a peer without CURVE, with a wrong server key, or a client key
  the allow-list refuses) only closes the connection. Each one is counted by reason in
  the link's ledger and logged, with the peer's address when it is still known.
- A connection that ends with a protocol error (most often a message over the socket's
  ``MAXMSGSIZE``) is closed, and on the connecting side libzmq does *not* reconnect it:
  the link would stay silent for good. It is counted, logged, and
  :meth:`SocketMonitor.reconnect_dropped` connects again.
"""

from __future__ import annotations

import errno
import logging
import os
import socket as pysocket
import threading
import time
from collections import Counter
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from .peers import PeerTracker

log = logging.getLogger(__name__)

RECONNECT_AFTER_S = 0.5  # a dropped connection libzmq has not retried by then stays dropped
MAX_TRACKED = 1024  # peers and logged (reason, host) pairs kept; counts are always exact

# Why a handshake failed, in words an operator can act on. libzmq gives the failed
# handshake's error code; these are the ones a misconfigured or hostile peer causes.
HANDSHAKE_REASONS: dict[int, str] = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        "security mismatch (the peer does not use the same mechanism, e.g. no CURVE)",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        "CURVE handshake could not be decrypted (the peer has a wrong server key)",
    zmq.PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE: "CURVE key exchange failed",
}
AUTH_REASON = "client key refused by the allow-list"
_PROTOCOL_ERRORS = {value: name for name, value in vars(zmq).items()
                    if name.startswith("PROTOCOL_ERROR_") and isinstance(value, int)}


def _peer_of(fd: int) -> str | None:
    """The remote address of libzmq's connection ``fd``, or None if it is already closed.

    libzmq 4.3's monitor names only the local endpoint of an accepted connection, so the
    peer is read from the descriptor; a peer that is refused at once may be gone first.
    """
    try:
        with pysocket.socket(fileno=os.dup(fd)) as probe:
            host, port = probe.getpeername()[:2]
    except (OSError, ValueError):
        return None
    return f"{host}:{port}"


class SocketMonitor:
    """Counts and logs one link's dropped connections and refused peers.

    Parameters
    ----------
    link
        The link's name, used in log lines.
    max_frame_bytes
        The socket's ``MAXMSGSIZE`` if it has one, named in the log line of a dropped
        connection because an oversized frame is its most common cause.
    """

    def __init__(self, link: str, max_frame_bytes: int | None = None) -> None:
        self.link = link
        self.peers = PeerTracker(link)  # connected peers, disconnects logged
        self.max_frame_bytes = max_frame_bytes
        self.dropped = 0  # connections libzmq closed for a protocol error; each reconnected
        self.refused: Counter[str] = Counter()
        self._peers: dict[int, str | None] = {}  # accepted connection -> peer address
        self._ours: int | None = None  # the connection this socket made (connect side)
        self._handshaken = False  # ... and whether its handshake succeeded
        self._failed: str | None = None  # reason of a handshake failure, until its disconnect
        self._logged: set[tuple[str, str]] = set()
        self._dropped_at: float | None = None  # a connection of ours ended and was not retried
        self._thread: threading.Thread | None = None

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
                self.peers.on_event(event["event"], event["value"],  # peers.py
                                    event["endpoint"].decode("utf-8", "replace"))
                self._on_event(event["event"], event["value"],
                               event["endpoint"].decode("utf-8", "replace"))
        finally:
            pipe.close(linger=0)

    def _on_event(self, event: int, value: int, endpoint: str) -> None:
        # libzmq's one I/O thread emits a handshake's protocol failure and then the
        # disconnect of the same connection, with nothing between: the disconnect names
        # the connection, and so the peer, that failed.
        failed, self._failed = self._failed, None
        if failed is not None and event != zmq.EVENT_DISCONNECTED:
            self._log_refusal(failed, f"a handshake on {endpoint} failed", "")
        if event == zmq.EVENT_ACCEPTED:
            if len(self._peers) < MAX_TRACKED:
                self._peers[value] = _peer_of(value)
        elif event == zmq.EVENT_CONNECTED:
            self._dropped_at = None
            self._ours, self._handshaken = value, False
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._handshaken = self._ours is not None
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.refused[AUTH_REASON] += 1
            if self._ours is not None:  # on a server, the ZAP handler logs it, with the key
                self._log_refusal(AUTH_REASON, f"the server at {endpoint} refused our key",
                                  endpoint)
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self._failed = HANDSHAKE_REASONS.get(
                value, f"protocol error {_PROTOCOL_ERRORS.get(value, hex(value))}")
            self.refused[self._failed] += 1
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self._failed = f"handshake failed ({os.strerror(value)})"
            if value in (errno.EPIPE, errno.ECONNRESET):  # the peer gave up first
                self._failed += (": the peer closed the connection, often because its "
                                 "security settings do not match (e.g. no CURVE)")
            self.refused[self._failed] += 1
        elif event == zmq.EVENT_DISCONNECTED:
            self._on_disconnected(value, endpoint, failed)
        elif event == zmq.EVENT_CONNECT_RETRIED:
            self._dropped_at = None  # libzmq reconnects this one itself

    def _on_disconnected(self, fd: int, endpoint: str, failed: str | None) -> None:
        ours, handshaken = fd == self._ours, self._handshaken
        if ours:
            self._ours, self._handshaken = None, False
        peer = self._peers.pop(fd, None)
        if failed is not None:
            if ours:
                self._log_refusal(failed, f"the handshake with {endpoint} failed", endpoint)
            else:
                self._log_refusal(failed, f"refused a connection on {endpoint} from "
                                  f"{peer or 'a peer gone before its address was read'}",
                                  peer or "")
        elif ours and handshaken:  # a refused handshake is not retried, nor should it be
            self._dropped_at = time.monotonic()  # cleared by CONNECT_RETRIED if libzmq retries

    def _log_refusal(self, reason: str, what: str, peer: str) -> None:
        host = peer.rsplit(":", 1)[0]
        if (reason, host) in self._logged:
            return
        if len(self._logged) < MAX_TRACKED:
            self._logged.add((reason, host))
        log.warning("%s: %s: %s; further ones of this kind are only counted",
                    self.link, what, reason)

    def reconnect_dropped(self, socket: zmq.Socket, address: str) -> None:
        """Connect to ``address`` again if libzmq dropped our connection and will not retry.

        Call from the thread that uses ``socket`` (ZeroMQ sockets are not thread-safe),
        when it is idle: a dropped link is an idle one.
        """
        dropped_at = self._dropped_at
        if dropped_at is None or time.monotonic() - dropped_at < RECONNECT_AFTER_S:
            return
        self._dropped_at = None
        self.dropped += 1
        limit = (f" (a frame over the socket's MAXMSGSIZE of {self.max_frame_bytes} bytes?)"
                 if self.max_frame_bytes else "")
        log.warning("%s: libzmq closed the connection to %s after a protocol error%s and will "
                    "not retry; messages in flight on it are lost (see the ledger's missing "
                    "ranges); connecting again", self.link, address, limit)
        try:
            socket.disconnect(address)
        except zmq.ZMQError:
            pass  # libzmq has already forgotten the endpoint
        socket.connect(address)

    def stats(self) -> dict[str, Any]:
        return {"peers": self.peers.stats(),
                "connections": {"dropped": self.dropped, "refused": dict(self.refused)}}
