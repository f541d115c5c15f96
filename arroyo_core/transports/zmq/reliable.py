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
from zmq import zmq_poll

from ...address import Address
from ...errors import ConfigError
from ...reliable import ACK_DELAY_S
from ...transport import AckedSender, FrameReceiver, Frames
from ...wire import DEFAULT_LIMITS
from ..answers import Answers
from .connections import ConnectionTracker
from .curve import CurveLink
from .pool import recv_frames_nowait
from .sockets import (
    EVENTS,
    HEARTBEAT_TIMEOUT_MS,
    NOBLOCK,
    POLL_MS,
    POLLIN,
    POLLOUT,
    bound_address,
    link_options,
    open_socket,
    readable,
    recv_frames,
    reuse_received,
    send_frames,
)

log = logging.getLogger(__name__)

# For this long after a message came, the receiving thread waits as a plain input does, in
# a receive that times out (ACK_DELAY_S) to send the acknowledgements due, and is never
# woken; once idle, it sleeps in poll and answer() wakes it through a pipe. A poll per
# message, and a wake-up per acknowledgement, cost more than the rest of a hop.
BUSY_S = 0.1
KINDS = {b"ack": "ack", b"hello": "hello"}


def answer_frames(kind: str, src: str, seq: int) -> list[bytes]:
    """An answer's frames (docs/protocol.md section 12.2)."""
    return [kind.encode(), src.encode(), b"%d" % seq]


def _answer_frames(token: bytes | None, kind: str, src: str, seq: int) -> list[bytes]:
    """An answer's frames, after the receiving ROUTER's routing id of its sender."""
    frames = answer_frames(kind, src, seq)
    return frames if token is None else [token, *frames]


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
        self._poll_answers: list[tuple[zmq.Socket, int]] = []  # zmq_poll's items
        self._poll_room: list[tuple[zmq.Socket, int]] = []
        self.peer: bytes | None = None  # a bound sender's receiver: the last to say hello
        self.full = False  # the last offer found the receiver's queue full
        self._connects = 0
        self.abandoned = False
        self.not_answers = 0  # messages from a receiver that were not answers (ignored)

    def open(self) -> None:
        kind = zmq.ROUTER if self.address.bind else zmq.DEALER
        self.socket = open_socket(kind, self.address, self.options, "reliable output",
                                  curve=self.curve, tracker=self.tracker)
        self.socket.sndtimeo = POLL_MS
        self._poll_answers = [(self.socket, POLLIN)]
        self._poll_room = [(self.socket, POLLIN | POLLOUT)]
        if self.address.bind:
            self.bound = bound_address(self.socket)

    def wait_for_peers(self) -> None:
        if self.expected_peers:
            self.tracker.wait_for(self.expected_peers, self.peer_timeout,
                                  lambda: self.abandoned)

    def keep(self, frames: Frames) -> Frames:
        """The frames as received where they were (the window sends them from there)."""
        reuse_received(frames)
        return frames

    def offer(self, frames: Frames, wait: bool) -> bool:
        socket = self.socket
        assert socket is not None, "offer() before open()"
        flags = 0 if wait and not self.abandoned else NOBLOCK
        # A sender whose window holds more than the receiver's queue offers into a full
        # queue often (about once per 1 MiB message at a fast source): once one offer
        # found it full, look before the next (a getsockopt costs a third of a raised
        # zmq.Again).
        if self.full and flags and not int(socket.get(EVENTS)) & POLLOUT:
            return False
        try:
            if self.address.bind:
                if self.peer is None:
                    return False
                frames = [self.peer, *frames]  # (the first frame is the only one that fails)
            send_frames(socket, frames, flags)
            self.full = False
            return True
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                self.peer = None  # gone: wait for its (or another one's) hello
            elif exc.errno != errno.EAGAIN:
                raise
            self.full = exc.errno == errno.EAGAIN
            return False

    def replies(self, timeout: float, room: bool = False) -> list[tuple[str, str, int]]:
        socket = self.socket
        assert socket is not None, "replies() before open()"
        heard: list[tuple[str, str, int]] = []
        if not self.address.bind and self.tracker.connects != self._connects:
            self._connects = self.tracker.connects  # connected (again): send all again
            heard.append(("hello", "", 0))
        if heard or timeout <= 0:
            if not readable(socket):
                return heard
        else:
            # (Room only for a receiver we send to: a bound ROUTER has room for any peer.
            # zmq_poll on items kept: Socket.poll makes a Poller each call, twice the cost.)
            items = self._poll_room if room and (self.peer or not self.address.bind) \
                else self._poll_answers
            ready = zmq_poll(items, int(timeout * 1000))
            events = ready[0][1] if ready else 0
            if events & POLLOUT:
                self.full = False  # (the next offer need not look first)
            if not events & POLLIN:
                return heard
        while readable(socket):
            parts = [frame.bytes for frame in recv_frames_nowait(socket)]
            peer = parts.pop(0) if self.address.bind else None
            answer = read_answer(parts)
            if answer is None:
                self.not_answers += 1
                if self.not_answers == 1:
                    log.warning("%s: ignored a message that is not an acknowledgement or a "
                                "hello (%d parts; counted as not_answers, logged once)",
                                self.link, len(parts))
                continue
            if answer[0] == "hello" and peer is not None:
                if self.peer != peer:
                    log.info("%s: receiver said hello; sending it what it has not finished",
                             self.link)
                self.peer = peer
            heard.append(answer)
        return heard

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
                "reliable": True, "not_answers": self.not_answers}


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
        self.answers: Answers | None = None
        self._recent = 0.0  # when a message was last received

    def open(self) -> None:
        kind = zmq.ROUTER if self.address.bind else zmq.DEALER
        self.socket = open_socket(kind, self.address, self.options, "reliable input",
                                  curve=self.curve, tracker=self.tracker)
        if self.address.bind:
            self.bound = bound_address(self.socket)
        self.answers = Answers(_answer_frames)

    def answer(self, token: Any, kind: str, src: str, seq: int, nbytes: int = 0) -> None:
        assert self.answers is not None, "answer() before open()"
        self.answers.put(token, kind, src, seq, nbytes)

    def receive(self, stop: threading.Event) -> Iterator[tuple[Frames, Any]]:
        socket, answers = self.socket, self.answers
        assert socket is not None and answers is not None, "receive() before open()"
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(answers.wake_r, zmq.POLLIN)
        socket.rcvtimeo = int(ACK_DELAY_S * 1000)
        bound, connects = self.address.bind, 0
        while not stop.is_set():
            if self.tracker.connects != connects:
                connects = self.tracker.connects
                if not bound and self.on_connect is not None:
                    self.on_connect()  # says hello
            now = time.monotonic()
            if now >= answers.due:
                answers.flush(socket)
            try:
                if now - self._recent < BUSY_S:
                    frames = recv_frames(socket)  # times out when acknowledgements are due
                else:
                    ready = dict(poller.poll(answers.sleep_ms(POLL_MS)))
                    answers.awake(ready)
                    if socket not in ready:
                        continue
                    frames = recv_frames_nowait(socket)
            except zmq.Again:
                continue
            token = frames.pop(0).bytes if bound else None
            self._recent = now  # (read before the receive: close enough for BUSY_S)
            yield frames, token

    def run_state(self, in_run: bool) -> None:
        self.tracker.run_state(in_run)

    def close(self) -> None:
        if self.socket is None:
            return
        if self.answers is not None:
            self.answers.flush(self.socket, force=True)  # what is finished, said before going
        self.tracker.stop(self.socket)
        self.socket.close(linger=200)
        self.socket = None
        if self.curve is not None:
            self.curve.release()
        if self.answers is not None:
            self.answers.close()

    def status(self) -> dict[str, Any]:
        return {**self.tracker.stats(), "pattern": "pull", "reliable": True,
                "acks_sent": self.answers.acks_sent if self.answers is not None else 0}
