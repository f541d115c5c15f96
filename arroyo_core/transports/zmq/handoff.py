"""Closing a sending socket without losing what its peers have not read yet.

libzmq's linger only waits until messages have left its own queue; then it closes the
connection. When the peer is held back (its input stopped because its queue is full),
what it has not read yet is still in the two kernels' TCP buffers, megabytes of frames.
If the peer then sends anything at all (a heartbeat or its answer to one) to the closed
socket, the kernel answers with a reset, which throws away what the closing side had not
sent yet, and libzmq 4.3 on the peer then drops the connection without reading what its
own kernel still held. A source that ends its run and exits while the next stage is busy
lost its last frames this way.

:class:`Handoff` closes like TCP intends: it keeps a duplicate of each connection's
descriptor, lets the ZeroMQ socket close with its linger, waits until libzmq has let go of
each connection (libzmq closes its descriptor only once it has written everything queued
for that peer into the kernel, or its linger ran out), then half-closes each connection
(FIN after the last byte) and reads and discards whatever the peer still sends until the
peer closes its end. A peer closes its end only after it has
read everything before the FIN, so when :meth:`Handoff.finish` returns true every byte
was taken by every peer. Everything is bounded by a deadline.
"""

from __future__ import annotations

import logging
import os
import select
import socket as pysocket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

CHECK_S = 0.01


def _socket_link(fd: int) -> str | None:
    """What descriptor ``fd`` of this process names now (e.g. ``socket:[1234]``)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


class Handoff:
    """Duplicates of a closing socket's connections, held until every peer has read all.

    Parameters
    ----------
    connections
        ``{fd: (local address, peer address)}`` as recorded when each connection was
        made; a descriptor that now names something else is skipped.
    link
        The link's name for log lines.
    """

    def __init__(self, connections: dict[int, tuple[object, object]], link: str) -> None:
        self.link = link
        self.sockets: list[pysocket.socket] = []
        self.held: dict[int, str] = {}  # libzmq's descriptor -> the socket it named
        for fd, (local, peer) in connections.items():
            try:
                sock = pysocket.socket(fileno=os.dup(fd))
            except OSError:
                continue  # closed since it was recorded
            try:
                same = (sock.type == pysocket.SOCK_STREAM and sock.getsockname() == local
                        and sock.getpeername() == peer)
            except OSError:
                same = False
            if same:
                self.sockets.append(sock)
                self.held[fd] = f"socket:[{os.fstat(sock.fileno()).st_ino}]"
            else:
                sock.close()  # the number was reused for something else: not ours

    def __bool__(self) -> bool:
        return bool(self.sockets)

    def wait_released(self, deadline: float,
                      cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Wait until libzmq has closed its descriptor of every connection: only then has
        it written all it queued for the peer, and a half-close cannot cut it short."""
        while any(_socket_link(fd) == name for fd, name in self.held.items()):
            if time.monotonic() > deadline or cancelled():
                return False
            time.sleep(CHECK_S)
        return True

    def finish(self, deadline: float, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Half-close every connection and wait for each peer to close its end; close all.

        Returns True if every peer closed (so it had read everything), False if the
        deadline came first (what it had not read is lost and shows in its ledger).
        """
        began = time.monotonic()
        peers = len(self.sockets)
        open_socks = []
        for sock in self.sockets:
            try:
                sock.shutdown(pysocket.SHUT_WR)
                sock.setblocking(False)
                open_socks.append(sock)
            except OSError:
                sock.close()
        while open_socks and time.monotonic() < deadline and not cancelled():
            readable, _, _ = select.select(open_socks, [], [], 0.05)
            for sock in readable:
                try:
                    data = sock.recv(65536)  # the peer's heartbeats: read, so no reset
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    open_socks.remove(sock)
                    sock.close()
        waited = time.monotonic() - began
        if not open_socks and waited > 0.2:
            log.info("%s: waited %.1f s at close until %d peer(s) had read everything",
                     self.link, waited, peers)
        if open_socks:
            log.warning("%s: %d peer(s) had not read everything before the close deadline; "
                        "what they had not read is lost", self.link, len(open_socks))
        for sock in open_socks:
            sock.close()
        self.sockets = []
        return not open_socks

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []


def recorded_addresses(fd: int) -> tuple[object, object] | None:
    """(local, peer) address of descriptor ``fd`` if it is a connected stream socket."""
    try:
        with pysocket.socket(fileno=os.dup(fd)) as sock:
            if sock.type != pysocket.SOCK_STREAM:
                return None
            return sock.getsockname(), sock.getpeername()
    except OSError:
        return None
