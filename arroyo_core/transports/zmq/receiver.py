"""The PULL and SUB receivers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import zmq

from ...address import Address
from ...budget import LinkBudget, frames_nbytes
from ...errors import ConfigError
from ...transport import FrameReceiver, Frames, WaitLog
from ...wire import DEFAULT_LIMITS
from .connections import ConnectionTracker
from .curve import CurveLink
from .reasons import no_peer_reason
from .sockets import (
    HEARTBEAT_TIMEOUT_MS,
    POLL_MS,
    bound_address,
    link_options,
    open_socket,
    recv_frames,
)

log = logging.getLogger(__name__)

PATTERNS = {"pull": zmq.PULL, "sub": zmq.SUB}
FRAME_CEILING = 16  # MAXMSGSIZE in multiples of max_message_bytes (docs/protocol.md 5.1)


class ZmqReceiver(FrameReceiver):
    """Receives on a PULL (default) or SUB socket.

    Only a frame over ``FRAME_CEILING * max_message_bytes`` makes libzmq close its
    connection (losing what was in flight on it, which the ledger shows as missing); a
    connecting receiver then connects again. Smaller oversized messages are rejected by
    the link step and the stream goes on.

    Parameters
    ----------
    pattern
        ``pull`` or ``sub``.
    topic
        On ``sub``, the topic subscribed to (the first frame of every message).
    hwm
        Messages queued per sender.
    max_bytes, message_bytes, peers
        Bound what the link queues in bytes (see :mod:`arroyo_core.budget`; ``peers`` is
        how many senders feed it, each with its own queue).
    heartbeat_ms, heartbeat_timeout_ms
        As on the sender, but off by default: the sender's heartbeats are answered anyway,
        and libzmq 4.3.5 aborts a receiving process whose own heartbeat fires after a
        held-back connection's peer went away (``Assertion failed: !_io_error``).
    curve_secret_key_file, curve_allow, curve_server_key_file
        See :mod:`.curve`.
    socket
        A PULL or SUB socket you made, bound or connected (plain or ``zmq.asyncio``):
        received on as it is, with your options and subscriptions (the link's socket
        options above do not apply), and closed with the link.
    """

    def __init__(self, address: Address, link: str, pattern: str = "pull",
                 topic: str = "arroyo", hwm: int = 100, heartbeat_ms: int = 0,
                 max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes,
                 curve_secret_key_file: str | None = None, curve_allow: Any = None,
                 curve_server_key_file: str | None = None,
                 heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
                 max_bytes: Any = None, message_bytes: Any = None, peers: int = 1,
                 socket: zmq.Socket | None = None) -> None:
        if socket is not None:
            pattern = socket_pattern(socket)
        if pattern not in PATTERNS:
            raise ConfigError(f"input pattern {pattern!r} is not one of {sorted(PATTERNS)}")
        self.address = address
        self.link = link
        self.pattern = pattern
        self.topic = str(topic).encode()
        self.budget = LinkBudget(max_bytes, message_bytes, peers, link) if max_bytes else None
        if self.budget is not None:
            hwm = self.budget.hwm(hwm)
        self.options = link_options(zmq.RCVHWM, int(hwm), 0, int(heartbeat_ms),
                                    int(heartbeat_timeout_ms))
        # The link step rejects and counts a message over max_message_bytes and the stream
        # goes on; libzmq instead drops the connection (and what is in flight on it) for a
        # frame over MAXMSGSIZE, so that is only a ceiling against absurd allocations.
        frame_ceiling = FRAME_CEILING * int(max_message_bytes)
        self.options[zmq.MAXMSGSIZE] = frame_ceiling
        if pattern == "sub":
            self.options[zmq.SUBSCRIBE] = self.topic
        self.curve = CurveLink.from_options(link, address.text, address.bind,
                                            curve_secret_key_file, curve_server_key_file,
                                            curve_allow)
        self.tracker = ConnectionTracker(link, frame_ceiling)
        self.given = socket
        self.socket: zmq.Socket | None = None

    def open(self) -> None:
        if self.given is not None:
            # A plain shadow, for an asyncio socket too; connections made before it came
            # here cannot be seen, so none are watched.
            self.socket = zmq.Socket.shadow(self.given.underlying)
            return
        self.socket = open_socket(PATTERNS[self.pattern], self.address, self.options,
                                  f"{self.pattern} input", curve=self.curve,
                                  tracker=self.tracker)
        if self.address.bind:
            self.bound = bound_address(self.socket)

    def receive(self, stop: threading.Event) -> Iterator[tuple[Frames, Any]]:
        socket = self.socket
        assert socket is not None, "receive() before open()"
        has_topic = self.pattern == "sub"
        budget = self.budget
        # Wait inside a receive that times out, not in poll after a NOBLOCK receive: when
        # messages come slower than we take them, that raised zmq.Again for every message.
        socket.rcvtimeo = POLL_MS
        waiting = WaitLog()  # while no peer is connected: say so, and why if we can tell
        while not stop.is_set():
            try:
                frames = recv_frames(socket)
            except zmq.Again:
                self.tracker.reconnect_dropped(socket, self.address.text)
                if self.tracker.count or self.given is not None:
                    waiting.reset()
                elif waiting.due():
                    log.info("%s: no peer for %.0f s to receive from: %s", self.link,
                             waiting.waited, no_peer_reason(self.address))
                continue
            if has_topic:
                frames = frames[1:]
            if budget is not None:
                hwm = budget.observe(frames_nbytes(frames))
                if hwm is not None:
                    socket.setsockopt(zmq.RCVHWM, hwm)
            yield frames, None

    def run_state(self, in_run: bool) -> None:
        self.tracker.run_state(in_run)

    def close(self) -> None:
        if self.socket is not None:
            self.tracker.stop(self.socket)
            self.socket.close(linger=0)
            self.socket = None
            if self.curve is not None:
                self.curve.release()

    def status(self) -> dict[str, Any]:
        stats = {**self.tracker.stats(), "pattern": self.pattern}
        if self.budget is not None:
            stats["budget"] = self.budget.stats()
        return stats


def socket_pattern(socket: zmq.Socket) -> str:
    """``pull`` or ``sub``: the pattern of a socket given to a receiver."""
    for name, kind in PATTERNS.items():
        if socket.type == kind:
            return name
    name = zmq.SocketType(int(socket.type)).name
    raise ConfigError(f"a link receives on a PULL or SUB socket, not on a {name} socket")


def socket_endpoint(socket: zmq.Socket) -> str:
    """The address a given socket was last bound or connected to (for logs and the
    ledger's link name)."""
    endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    if not endpoint:
        raise ConfigError("bind or connect the socket before making a link of it")
    return endpoint
