"""A reliable PUSH/PULL link's two ends over ZeroMQ (``reliable = true``): the messages one
way, the receiver's acknowledgements and hellos back on the same connection.

The end that binds is a ROUTER, the end that connects a DEALER: a ROUTER can answer the
peer a message came from (a bound receiver acknowledges each sender), and a bound sender
sends only to the receiver that last said hello (``ROUTER_MANDATORY``: never into a dead
peer's queue). A connecting receiver says hello each time its connection is up; a
connecting sender reports ``hello`` to its link itself when it connected again, so the
link sends its window again (the receiver drops what it had).

What travels back (receiver -> sender), three frames of ASCII: ``ack SRC SEQ`` (finished
everything of sender SRC up to SEQ) and ``hello SRC SEQ`` (has everything before SEQ; SRC
empty: knows nothing). docs/protocol.md section 12 has the rest. Which message is sent
when is decided by the link (:mod:`arroyo_core.reliable_link`); this module moves bytes.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import zmq

from ...address import Address
from ...errors import ConfigError
from ...transport import AckedSender, FrameReceiver, Frames
from ...wire import DEFAULT_LIMITS
from .connections import ConnectionTracker
from .curve import CurveLink
from .pool import recv_frames_nowait
from .sockets import (
    HEARTBEAT_TIMEOUT_MS,
    NOBLOCK,
    POLL_MS,
    SNDMORE,
    ZERO_COPY_BYTES,
    bound_address,
    link_options,
    open_socket,
    received_frame,
    send_frames,
)

log = logging.getLogger(__name__)

ACK_DELAY_S = 0.002  # acknowledgements are sent together, at most this late
# For this long after a message came, the receiving thread naps (ACK_DELAY_S at a time)
# rather than sleeps: an acknowledgement is due soon, and a nap ends in time by itself,
# where waking a sleeper costs the finishing thread a pipe write and a thread switch.
BUSY_S = 0.1
KINDS = {b"ack": "ack", b"hello": "hello"}


def answer_frames(kind: str, src: str, seq: int) -> list[bytes]:
    """An answer's frames (docs/protocol.md section 12.2)."""
    return [kind.encode(), src.encode(), b"%d" % seq]


def read_answer(parts: list[bytes]) -> tuple[str, str, int] | None:
    """``(kind, src, seq)`` of an answer's frames; None if they are not one."""
    if len(parts) != 3 or parts[0] not in KINDS or not parts[2].isdigit():
        return None
    return KINDS[parts[0]], parts[1].decode("utf-8", "replace"), int(parts[2])


def _socket_options(hwm_option: int, hwm: int, linger_ms: int, heartbeat_ms: int,
                    heartbeat_timeout_ms: int, bind: bool) -> dict[int, Any]:
    options = link_options(hwm_option, hwm, linger_ms, heartbeat_ms, heartbeat_timeout_ms)
    if bind:
        options.update({zmq.ROUTER_MANDATORY: 1, zmq.ROUTER_HANDOVER: 1})
    # The connecting end keeps its identity across reconnects of one process.
    else:
        options[zmq.ROUTING_ID] = b"r" + os.urandom(8)
    return options


class ReliableSender(AckedSender):
    """The sending end of a reliable link (output option ``reliable = true``).

    Parameters
    ----------
    hwm, overflow, peers, peer_timeout, linger_ms, heartbeat_ms, heartbeat_timeout_ms
        As on a PUSH output (:class:`.push.PushSender`); ``overflow`` is applied by the
        link to its window.
    curve_secret_key_file, curve_allow, curve_server_key_file
        See :mod:`.curve`.
    max_bytes, message_bytes
        Accepted; the link's window (``window_bytes``) bounds what it holds.
    """

    batch = 64
    pattern = "push"

    def __init__(self, address: Address, link: str, hwm: int = 100, overflow: str = "block",
                 peers: int = 0, peer_timeout: float = 30.0, linger_ms: int = 10_000,
                 heartbeat_ms: int = 1000, heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
                 curve_secret_key_file: str | None = None, curve_allow: Any = None,
                 curve_server_key_file: str | None = None, max_bytes: Any = None,
                 message_bytes: Any = None) -> None:
        if overflow not in ("block", "drop-newest"):
            raise ConfigError(f"overflow {overflow!r} is not one of ('block', 'drop-newest')")
        self.address, self.link, self.overflow = address, link, overflow
        self.expected_peers, self.peer_timeout = int(peers), float(peer_timeout)
        self.linger_s = int(linger_ms) / 1000
        self.max_bytes = max_bytes
        self.options = _socket_options(zmq.SNDHWM, int(hwm), 0, int(heartbeat_ms),
                                       int(heartbeat_timeout_ms), address.bind)
        self.options[zmq.RCVHWM] = 0  # acknowledgements are never dropped here
        self.curve = CurveLink.from_options(link, address.text, address.bind,
                                            curve_secret_key_file, curve_server_key_file,
                                            curve_allow)
        self.tracker = ConnectionTracker(link)
        self.socket: zmq.Socket | None = None
        self.peer: bytes | None = None  # a bound sender's receiver: the last to say hello
        self._connects = 0
        self.abandoned = False

    def open(self) -> None:
        kind = zmq.ROUTER if self.address.bind else zmq.DEALER
        self.socket = open_socket(kind, self.address, self.options, "reliable output",
                                  curve=self.curve, tracker=self.tracker)
        self.socket.sndtimeo = POLL_MS
        if self.address.bind:
            self.bound = bound_address(self.socket)

    def wait_for_peers(self) -> None:
        if self.expected_peers:
            self.tracker.wait_for(self.expected_peers, self.peer_timeout,
                                  lambda: self.abandoned)

    def offer(self, frames: Frames, wait: bool) -> bool:
        socket = self.socket
        assert socket is not None, "offer() before open()"
        for index in range(2, len(frames)):
            if len(frames[index]) >= ZERO_COPY_BYTES:
                frames[index] = received_frame(frames[index])
        flags = 0 if wait and not self.abandoned else NOBLOCK
        try:
            if self.address.bind:
                if self.peer is None:
                    return False
                socket.send(self.peer, flags | SNDMORE)  # only this can fail
            send_frames(socket, frames, flags)
            return True
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                self.peer = None  # gone: wait for its (or another one's) hello
            elif exc.errno != errno.EAGAIN:
                raise
            return False

    def replies(self, timeout: float) -> list[tuple[str, str, int]]:
        socket = self.socket
        assert socket is not None, "replies() before open()"
        heard: list[tuple[str, str, int]] = []
        if not self.address.bind and self.tracker.connects != self._connects:
            self._connects = self.tracker.connects  # connected (again): send all again
            heard.append(("hello", "", 0))
        if not socket.poll(int(timeout * 1000) if not heard else 0, zmq.POLLIN):
            return heard
        while True:
            try:
                parts = socket.recv_multipart(NOBLOCK)
            except zmq.Again:
                return heard
            peer = parts.pop(0) if self.address.bind else None
            answer = read_answer(parts)
            if answer is None:
                log.warning("%s: ignored a message that is not an acknowledgement (%d parts)",
                            self.link, len(parts))
                continue
            if answer[0] == "hello" and peer is not None:
                if self.peer != peer:
                    log.info("%s: receiver said hello; sending it what it has not finished",
                             self.link)
                self.peer = peer
            heard.append(answer)

    def run_state(self, in_run: bool) -> None:
        self.tracker.run_state(in_run)

    def abandon(self) -> None:
        self.abandoned = True

    def close(self) -> None:
        if self.socket is None:
            return
        self.tracker.stop(self.socket)
        # Nothing to linger for: the link waited for acknowledgements before closing.
        self.socket.close(linger=0 if self.abandoned else int(self.linger_s * 1000))
        self.socket = None
        if self.curve is not None:
            self.curve.release()

    def status(self) -> dict[str, Any]:
        return {**self.tracker.stats(), "pattern": self.pattern, "overflow": self.overflow,
                "reliable": True}


class ReliableReceiver(FrameReceiver):
    """The receiving end of a reliable link (input option ``reliable = true``).

    Parameters
    ----------
    hwm, heartbeat_ms, heartbeat_timeout_ms, max_message_bytes, pattern
        As on a PULL input (:class:`.receiver.ZmqReceiver`); ``pattern`` must be ``pull``.
    curve_secret_key_file, curve_allow, curve_server_key_file
        See :mod:`.curve`.
    max_bytes, message_bytes, peers
        Accepted, not applied: the sender's window bounds what is in flight.
    """

    def __init__(self, address: Address, link: str, pattern: str = "pull", hwm: int = 100,
                 heartbeat_ms: int = 0, heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
                 max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes,
                 curve_secret_key_file: str | None = None, curve_allow: Any = None,
                 curve_server_key_file: str | None = None, max_bytes: Any = None,
                 message_bytes: Any = None, peers: int = 1) -> None:
        if pattern != "pull":
            raise ConfigError(f"a reliable input is pull, not {pattern!r}")
        self.address, self.link = address, link
        self.options = _socket_options(zmq.RCVHWM, int(hwm), 0, int(heartbeat_ms),
                                       int(heartbeat_timeout_ms), address.bind)
        self.options[zmq.MAXMSGSIZE] = 16 * int(max_message_bytes)
        self.options[zmq.SNDHWM] = 0  # acknowledgements are never dropped here
        self.curve = CurveLink.from_options(link, address.text, address.bind,
                                            curve_secret_key_file, curve_server_key_file,
                                            curve_allow)
        self.tracker = ConnectionTracker(link, 16 * int(max_message_bytes))
        self.socket: zmq.Socket | None = None
        self._lock = threading.Lock()
        self._acks: dict[tuple[Any, str], int] = {}  # under _lock: the newest per sender
        self._hellos: list[tuple[Any, str, int]] = []  # under _lock
        self._last_ack = 0.0
        self._woken = False  # under _lock: the pipe was written to since the poll began
        self._sleeping = False  # under _lock: the receiving thread is (about to be) in poll
        self._napping = False  # under _lock: ... for ACK_DELAY_S at most
        self._recent = 0.0  # when a message was last received
        self._wake_r, self._wake_w = -1, -1
        self.acks_sent = 0

    def open(self) -> None:
        kind = zmq.ROUTER if self.address.bind else zmq.DEALER
        self.socket = open_socket(kind, self.address, self.options, "reliable input",
                                  curve=self.curve, tracker=self.tracker)
        if self.address.bind:
            self.bound = bound_address(self.socket)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def answer(self, token: Any, kind: str, src: str, seq: int) -> None:
        with self._lock:
            if kind == "ack":
                timed = bool(self._acks) or self._napping
                self._acks[(token, src)] = seq
                if timed:  # the receiving thread's poll ends when they are due
                    return
            else:
                self._hellos.append((token, src, seq))
            # Only a receiving thread asleep in poll is woken: a write to the pipe costs
            # the caller a thread switch (the GIL), and a busy one sends at its next turn.
            if not self._sleeping or self._woken:
                return
            self._woken = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # the pipe is full (the receiver is awake anyway) or closed

    def _flush(self, now: float) -> None:
        """Send hellos at once and acknowledgements at most every ACK_DELAY_S."""
        socket = self.socket
        assert socket is not None
        with self._lock:
            hellos, self._hellos = self._hellos, []
            acks = {}
            if self._acks and now - self._last_ack >= ACK_DELAY_S:
                acks, self._acks = self._acks, {}
                self._last_ack = now
        for kind, items in (("hello", hellos), ("ack", [(t, s, q) for (t, s), q
                                                        in acks.items()])):
            for token, src, seq in items:
                parts = answer_frames(kind, src, seq)
                if token is not None:
                    parts.insert(0, token)
                try:
                    socket.send_multipart(parts, NOBLOCK)
                    self.acks_sent += kind == "ack"
                except zmq.ZMQError:
                    pass  # gone, or cannot take it now: acks are cumulative, hellos repeat

    def receive(self, stop: threading.Event) -> Iterator[tuple[Frames, Any]]:
        socket = self.socket
        assert socket is not None, "receive() before open()"
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        bound, connects = self.address.bind, 0
        while not stop.is_set():
            if self.tracker.connects != connects:
                connects = self.tracker.connects
                if not bound and self.on_connect is not None:
                    self.on_connect()  # says hello
            now = time.monotonic()
            self._flush(now)
            with self._lock:  # what answer() added from here on wakes us
                self._sleeping = True
                self._napping = now - self._recent < BUSY_S
                wait = 0 if self._hellos else (
                    int(ACK_DELAY_S * 1000) if self._napping else POLL_MS)
                if self._acks:
                    wait = min(wait, max(0, int((self._last_ack + ACK_DELAY_S - now) * 1000)
                                         + 1))
            ready = dict(poller.poll(wait))
            with self._lock:
                self._sleeping = self._napping = self._woken = False
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            if socket not in ready:
                continue
            for _ in range(64):  # then acknowledge what is finished, and read on
                try:
                    frames = recv_frames_nowait(socket)
                except zmq.Again:
                    break
                token = frames.pop(0).bytes if bound else None
                self._recent = time.monotonic()
                yield frames, token
                if self._acks or self._hellos:
                    self._flush(time.monotonic())
                # Asking costs a third of a zmq.Again raised when nothing is left, the
                # usual case when messages come slower than they are handled.
                if not int(socket.get(zmq.EVENTS)) & zmq.POLLIN:
                    break

    def run_state(self, in_run: bool) -> None:
        self.tracker.run_state(in_run)

    def close(self) -> None:
        if self.socket is None:
            return
        if self._acks or self._hellos:
            self._last_ack = 0.0
            self._flush(time.monotonic())  # what is finished, said before going
        self.tracker.stop(self.socket)
        self.socket.close(linger=200)
        self.socket = None
        if self.curve is not None:
            self.curve.release()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def status(self) -> dict[str, Any]:
        return {**self.tracker.stats(), "pattern": "pull", "reliable": True,
                "acks_sent": self.acks_sent}
