"""The PUSH sender: each message goes to one connected puller; a full peer pushes back."""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from ...address import Address
from ...budget import LinkBudget, frames_nbytes
from ...errors import ConfigError
from ...transport import Frames, FrameSender, WaitLog
from .connections import ConnectionTracker
from .curve import CurveLink
from .handoff import Handoff
from .reasons import no_peer_reason
from .sockets import (
    HEARTBEAT_TIMEOUT_MS,
    NOBLOCK,
    POLL_MS,
    bound_address,
    link_options,
    open_socket,
    reuse_received,
    send_frames,
)

log = logging.getLogger(__name__)

OVERFLOW = ("block", "drop-newest")


class PushSender(FrameSender):
    """Sends on a PUSH socket; small Events go in batches (docs/protocol.md section 9).

    Parameters
    ----------
    hwm
        Messages queued per peer before the overflow policy applies (a batch is one).
    overflow
        ``block`` waits for the peer (back-pressure), ``drop-newest`` discards the event
        that does not fit and counts it; Start and Stop always wait. Either way nothing is
        lost unseen. (ZeroMQ cannot take back a queued message, so drop-oldest and
        keep-latest are receiving-side queue policies.)
    peers
        How many connected peers a run waits for before its Start is sent, so the first
        messages are shared among all the pullers, not given to the first one to connect.
        0: do not wait.
    peer_timeout
        Seconds to wait for those peers before starting anyway (0: forever).
    linger_ms
        How long ``close`` waits for peers to take what was sent: ZeroMQ's queue, then
        the kernels' buffers (:mod:`.handoff`). It returns as soon as every peer has read
        everything.
    heartbeat_ms, heartbeat_timeout_ms
        ZeroMQ heartbeats: a ping every ``heartbeat_ms``; a peer silent for
        ``heartbeat_timeout_ms`` is disconnected (and logged). What was queued for it is
        lost, so keep the timeout above the longest time a healthy peer may be held back
        (a peer that exits, crashes or whose host vanishes is noticed sooner: see
        :func:`.sockets.link_options`).
    max_bytes, message_bytes
        A byte budget for what this link queues: sets the high-water mark from the
        (expected or observed) message size; see :mod:`arroyo_core.budget`.
    curve_secret_key_file, curve_allow, curve_server_key_file
        CURVE encryption and client allow-list; see :mod:`.curve`.
    """

    socket_type = zmq.PUSH
    batch = 64  # Events per batch by default (arroyo_core.link.OutputLink)
    pattern = "push"

    def __init__(self, address: Address, link: str, hwm: int = 100, overflow: str = "block",
                 peer_timeout: float = 30.0, linger_ms: int = 10_000, heartbeat_ms: int = 1000,
                 curve_secret_key_file: str | None = None, curve_allow: Any = None,
                 curve_server_key_file: str | None = None, peers: int = 0,
                 heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS, max_bytes: Any = None,
                 message_bytes: Any = None) -> None:
        if overflow not in OVERFLOW:
            raise ConfigError(f"overflow {overflow!r} is not one of {OVERFLOW}")
        self.address = address
        self.link = link
        self.overflow = overflow
        self.expected_peers = int(peers)
        self.peer_timeout = float(peer_timeout)
        self.linger_s = int(linger_ms) / 1000
        self.budget = (LinkBudget(max_bytes, message_bytes, max(1, self.budget_peers()), link)
                       if max_bytes else None)
        if self.budget is not None:
            hwm = self.budget.hwm(hwm)
        self.options = link_options(zmq.SNDHWM, int(hwm), int(linger_ms), int(heartbeat_ms),
                                    int(heartbeat_timeout_ms))
        self.curve = CurveLink.from_options(link, address.text, address.bind,
                                            curve_secret_key_file, curve_server_key_file,
                                            curve_allow)
        self.tracker = ConnectionTracker(link)
        self.socket: zmq.Socket | None = None
        self._abandoned = False
        self._wait_log = WaitLog()

    def budget_peers(self) -> int:
        """How many peer queues the byte budget is shared by."""
        return self.expected_peers

    def open(self) -> None:
        self.socket = open_socket(self.socket_type, self.address, self.options,
                                  f"{self.pattern} output", curve=self.curve,
                                  tracker=self.tracker)
        self.socket.sndtimeo = POLL_MS  # send waits inside send, a poll interval at a time
        if self.address.bind:
            self.bound = bound_address(self.socket)

    def wait_for_peers(self) -> None:
        if not self.expected_peers:
            return
        assert self.socket is not None
        self.tracker.wait_for(self.expected_peers, self.peer_timeout, lambda: self._abandoned)
        # libzmq attaches a new peer's queue when the socket next processes its commands,
        # which reading EVENTS does at once: the Start then goes to an attached peer.
        self.socket.getsockopt(zmq.EVENTS)

    def send(self, frames: Frames, droppable: bool) -> str | None:
        reuse_received(frames)
        if self.budget is not None:
            hwm = self.budget.observe(frames_nbytes(frames))
            if hwm is not None:
                assert self.socket is not None
                self.socket.setsockopt(zmq.SNDHWM, hwm)
        return self._send(frames, droppable)

    def _send(self, frames: Frames, droppable: bool) -> str | None:
        socket = self.socket
        assert socket is not None, "send() before open()"
        # To wait, send blocks (SNDTIMEO is POLL_MS) rather than failing at once and
        # polling: a peer slower than us, the usual lot of a source, would otherwise cost
        # a raised zmq.Again and a poll per message, as much CPU as encoding one.
        dropping = self.overflow == "drop-newest" and droppable  # a lost Start/Stop corrupts a run
        # Once abandoned, a send that does not go at once is not waited for: each would
        # otherwise wait out SNDTIMEO, seconds for a queue of messages no peer takes.
        try:
            send_frames(socket, frames, NOBLOCK if dropping or self._abandoned else 0)
            return None
        except zmq.Again:
            if dropping:
                return "peer's queue full"
        waiting = self._wait_log
        waiting.reset()
        waiting.due()  # starts its clock
        while not self._abandoned:
            self.waiting()
            if waiting.due():
                self._log_wait(waiting.waited)
            try:
                send_frames(socket, frames)
                return None
            except zmq.Again:
                continue
        return "no peer took it before shutdown"

    def waiting(self) -> None:
        """Called between attempts while a send waits for a peer: one that libzmq will
        not connect again by itself is connected again here (see connections.py)."""
        if not self.address.bind:
            assert self.socket is not None
            self.tracker.reconnect_dropped(self.socket, self.address.text)

    def _log_wait(self, seconds: float) -> None:
        peers = self.tracker.count
        why = (f"{peers} peer(s) connected, none taking messages (their queues are full)"
               if peers else no_peer_reason(self.address))
        log.info("%s: waiting %.0f s to send: %s", self.link, seconds, why)

    def run_state(self, in_run: bool) -> None:
        self.tracker.run_state(in_run)

    def abandon(self) -> None:
        self._abandoned = True

    def close(self) -> None:
        if self.socket is None:
            return
        deadline = time.monotonic() + self.linger_s
        handoff = None
        if not self._abandoned:  # see handoff.py: peers must read all before we go
            handoff = Handoff(self.tracker.connections(), self.link)
        self.tracker.stop(self.socket)
        self.socket.close(linger=0 if self._abandoned else int(self.linger_s * 1000))
        self.socket = None
        if self.curve is not None:
            self.curve.release()
        if handoff:
            handoff.wait_released(deadline, lambda: self._abandoned)
            handoff.finish(deadline, lambda: self._abandoned)
        elif handoff is not None:
            handoff.close()

    def status(self) -> dict[str, Any]:
        stats = {**self.tracker.stats(), "pattern": self.pattern, "overflow": self.overflow}
        if self.budget is not None:
            stats["budget"] = self.budget.stats()
        return stats
