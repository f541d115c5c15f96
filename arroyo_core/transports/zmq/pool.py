"""A pool's two ends over ZeroMQ: the dispatcher's ROUTER and each worker's DEALER.

Why ROUTER/DEALER, and credits on the same connection: a PUSH socket hands each message
to the next puller in turn, into a full queue as readily as an empty one, and cannot say
whom it gave what, so neither "to the worker that has room" nor "Start and Stop to every
worker" can be built on it. A ROUTER sends to the peer the link names, and the same
connection carries each worker's credit back (a DEALER sends as well as it receives), so
there is no second socket to pair up with the first, no second port, and a worker that
connects is heard from on the connection it will be sent on. ``ROUTER_MANDATORY`` makes a
send to a peer that has gone fail at once (so nothing is handed to a dead worker), and
``ROUTER_HANDOVER`` lets a worker whose connection broke take its identity back.

What travels besides Arroyo messages:

- worker -> dispatcher: ``[b"hello", n]`` when its connection is up (new, or again): it can
  take ``n`` messages now; ``[b"credit", n]``: it has finished ``n`` more (the link
  acknowledged them: handled, or rejected). ``n`` is ASCII digits.
- dispatcher -> worker: a single empty frame, a probe that the worker drops (an Arroyo
  message's header is never empty).

Credits are counted by the dispatch link (:mod:`arroyo_core.dispatch`); this module only
moves them.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import zmq

from ...address import Address
from ...errors import ConfigError
from ...transport import FrameReceiver, Frames, PeerSender, WaitLog
from ...wire import DEFAULT_LIMITS
from .connections import ConnectionTracker
from .curve import CurveLink
from .reasons import no_peer_reason
from .sockets import (
    HEARTBEAT_TIMEOUT_MS,
    NOBLOCK,
    POLL_MS,
    SNDMORE,
    bound_address,
    link_options,
    open_socket,
    recv_frames,
    reuse_received,
    send_frames,
)

log = logging.getLogger(__name__)

HELLO, CREDIT = b"hello", b"credit"
PROBE = b""
CONTROL_SLACK = 8  # messages beyond a worker's credit its queue must hold (Start, Stop)


class DispatchSender(PeerSender):
    """The dispatcher's ROUTER socket (output pattern ``dispatch``).

    Parameters
    ----------
    hwm
        Messages queued per worker; a worker's credit is capped below it.
    peers, peer_timeout
        Workers a run waits for before its Start (0: none), and for how long (0: forever).
    linger_ms, heartbeat_ms, heartbeat_timeout_ms
        As on a PUSH output (:class:`.push.PushSender`).
    curve_secret_key_file, curve_allow, curve_server_key_file
        See :mod:`.curve`.
    max_bytes, message_bytes
        Accepted (a service's ``memory_limit`` sets them) but not applied: what a pool
        link holds is bounded by the workers' credits, in messages.
    """

    pattern = "dispatch"

    def __init__(self, address: Address, link: str, hwm: int = 100, peers: int = 0,
                 peer_timeout: float = 30.0, linger_ms: int = 10_000, heartbeat_ms: int = 1000,
                 heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
                 curve_secret_key_file: str | None = None, curve_allow: Any = None,
                 curve_server_key_file: str | None = None, max_bytes: Any = None,
                 message_bytes: Any = None) -> None:
        if int(hwm) <= CONTROL_SLACK:
            raise ConfigError(f"hwm {hwm}: a dispatcher needs more than {CONTROL_SLACK}")
        self.address = address
        self.link = link
        self.hwm = int(hwm)
        self.expected_peers = int(peers)
        self.peer_timeout = float(peer_timeout)
        self.linger_ms = int(linger_ms)
        self.linger_s = self.linger_ms / 1000
        self.options = link_options(zmq.SNDHWM, self.hwm, self.linger_ms, int(heartbeat_ms),
                                    int(heartbeat_timeout_ms))
        self.options.update({zmq.ROUTER_MANDATORY: 1, zmq.ROUTER_HANDOVER: 1,
                             zmq.RCVHWM: 0})  # credits must never be dropped
        self.curve = CurveLink.from_options(link, address.text, address.bind,
                                            curve_secret_key_file, curve_server_key_file,
                                            curve_allow)
        self.tracker = ConnectionTracker(link)
        self.socket: zmq.Socket | None = None
        # The most a worker may hold: its queue here must also fit a Start and a Stop.
        self.max_credit = self.hwm - CONTROL_SLACK

    def open(self) -> None:
        self.socket = open_socket(zmq.ROUTER, self.address, self.options, "dispatch output",
                                  curve=self.curve, tracker=self.tracker)
        if self.address.bind:
            self.bound = bound_address(self.socket)

    def send_to(self, peer: bytes, frames: Frames) -> bool:
        socket = self.socket
        assert socket is not None, "send_to() before open()"
        reuse_received(frames)
        waiting = WaitLog()
        while True:
            try:
                # the identity frame first: only it can fail, and then nothing was sent
                socket.send(peer, NOBLOCK | SNDMORE)
                send_frames(socket, frames)
                return True
            except zmq.ZMQError as exc:
                if exc.errno == errno.EHOSTUNREACH:
                    return False
                if exc.errno != errno.EAGAIN or self.abandoned:
                    return False
            # The worker's queue is full though credits say it has room: it is a control
            # message past its credit, or the worker's connection is being replaced.
            if waiting.due():
                log.info("%s: waiting %.0f s for a worker's queue to take a message",
                         self.link, waiting.waited)
            socket.poll(POLL_MS, zmq.POLLOUT)

    def credits(self, timeout: float) -> list[tuple[bytes, bool, int]]:
        socket = self.socket
        assert socket is not None, "credits() before open()"
        heard: list[tuple[bytes, bool, int]] = []
        if not socket.poll(int(timeout * 1000), zmq.POLLIN):
            return heard
        while True:
            try:
                parts = socket.recv_multipart(NOBLOCK)
            except zmq.Again:
                return heard
            if len(parts) != 3 or parts[1] not in (HELLO, CREDIT) or not parts[2].isdigit():
                log.warning("%s: ignored a message that is not a worker's credit (%d parts)",
                            self.link, len(parts))
                continue
            heard.append((parts[0], parts[1] == HELLO, int(parts[2])))

    def probe(self, peer: bytes) -> bool:
        socket = self.socket
        assert socket is not None, "probe() before open()"
        try:
            socket.send_multipart([peer, PROBE], NOBLOCK)
        except zmq.ZMQError as exc:
            return exc.errno == errno.EAGAIN  # there, with a full queue
        return True

    def run_state(self, in_run: bool) -> None:
        self.tracker.run_state(in_run)

    def waiting_reason(self) -> str:
        """Why no worker takes a message, for a log line."""
        peers = self.tracker.count
        return (f"{peers} worker(s) connected, none with credit (all busy)" if peers
                else no_peer_reason(self.address))

    def close(self) -> None:
        if self.socket is None:
            return
        self.tracker.stop(self.socket)
        self.socket.close(linger=0 if self.abandoned else self.linger_ms)
        self.socket = None
        if self.curve is not None:
            self.curve.release()

    def status(self) -> dict[str, Any]:
        return {**self.tracker.stats(), "pattern": self.pattern}


class WorkerReceiver(FrameReceiver):
    """One worker's DEALER socket (input pattern ``worker``): it receives its share of a
    pool's messages and gives a credit back for each one the link acknowledges.

    Parameters
    ----------
    credit
        Messages this worker holds at most (received, queued or being processed): a
        paused or slow worker is handed no more than this.
    hwm, heartbeat_ms, heartbeat_timeout_ms, max_message_bytes
        As on a PULL input (:class:`.receiver.ZmqReceiver`).
    curve_secret_key_file, curve_allow, curve_server_key_file
        See :mod:`.curve`.
    max_bytes, message_bytes
        Accepted, not applied: ``credit`` bounds what a worker holds (as on the dispatcher).
    """

    acknowledges = True
    shares = True
    pattern = "worker"

    def __init__(self, address: Address, link: str, credit: int = 8, hwm: int = 100,
                 heartbeat_ms: int = 0, heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
                 max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes,
                 curve_secret_key_file: str | None = None, curve_allow: Any = None,
                 curve_server_key_file: str | None = None, max_bytes: Any = None,
                 message_bytes: Any = None) -> None:
        if int(credit) < 1:
            raise ConfigError(f"credit {credit}: a worker must take at least 1 message")
        self.address = address
        self.link = link
        self.credit = int(credit)
        self.options = link_options(zmq.RCVHWM, max(int(hwm), self.credit + CONTROL_SLACK),
                                    0, int(heartbeat_ms), int(heartbeat_timeout_ms))
        self.options[zmq.MAXMSGSIZE] = 16 * int(max_message_bytes)
        # A fixed identity, so that a connection that broke and came back is the same
        # worker to the dispatcher (ROUTER_HANDOVER); a restarted process is a new one.
        self.options[zmq.ROUTING_ID] = b"w" + os.urandom(8)
        self.curve = CurveLink.from_options(link, address.text, address.bind,
                                            curve_secret_key_file, curve_server_key_file,
                                            curve_allow)
        self.tracker = ConnectionTracker(link)
        self.socket: zmq.Socket | None = None
        self.delivered = 0  # messages yielded (probes are not)
        self._lock = threading.Lock()
        self._acked = 0  # acknowledged, under _lock
        self._sent_back = 0  # credits given back (receiving thread only)
        self._acked_seq: dict[str, int] = {}  # reliable: per sender, the last finished
        self._wake_r, self._wake_w = -1, -1
        # Credits go back in handfuls: each wake-up of the receiving thread takes the GIL
        # from the operator, and each credit message costs the dispatcher a wake-up too
        self._handful = max(1, self.credit // 2)

    def open(self) -> None:
        self.socket = open_socket(zmq.DEALER, self.address, self.options, "worker input",
                                  curve=self.curve, tracker=self.tracker)
        if self.address.bind:
            self.bound = bound_address(self.socket)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)

    def acknowledge(self, tokens: list[Any]) -> None:
        # From the processing thread (or the receiving one, for a rejected message): the
        # socket belongs to the receiving thread, so only count, and wake it up once a
        # handful of credits is due, or once this worker holds nothing more (the end of a
        # run, or a trickle). Never a deadlock: a dispatcher that waits for this worker's
        # credit has given it all of it, so it holds more than a handful until a handful
        # is due.
        with self._lock:
            self._acked += len(tokens)
            acked = self._acked
        if acked - self._sent_back < self._handful and self.delivered > acked:
            return
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (the receiver is awake anyway) or closed

    def answer(self, token: Any, kind: str, src: str, seq: int, nbytes: int = 0) -> None:
        """A reliable worker (docs/protocol.md section 12): an acknowledgement up to
        ``seq`` gives back a credit for each message it finishes; a hello is not needed
        (a worker's stream is never sent again: a dead worker's messages go to others)."""
        if kind != "ack":
            return
        with self._lock:
            count = seq - self._acked_seq.get(src, -1)
            self._acked_seq[src] = seq
        if count > 0:
            self.acknowledge([token] * count)

    def receive(self, stop: threading.Event) -> Iterator[tuple[Frames, Any]]:
        socket = self.socket
        assert socket is not None, "receive() before open()"
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        connects = 0
        waiting = WaitLog()
        while not stop.is_set():
            if self.tracker.connects != connects:  # connected (again): say what we can take
                connects = self.tracker.connects
                self._give_back(hello=True)
            ready = dict(poller.poll(POLL_MS))
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
                self._give_back(hello=False)
            if socket not in ready:
                if self.tracker.count:
                    waiting.reset()
                elif waiting.due():
                    log.info("%s: no dispatcher for %.0f s: %s", self.link, waiting.waited,
                             no_peer_reason(self.address))
                continue
            while True:
                try:
                    frames = recv_frames_nowait(socket)
                except zmq.Again:
                    break
                if len(frames) == 1 and not len(frames[0]):
                    continue  # a probe
                self.delivered += 1
                yield frames, 1

    def _give_back(self, hello: bool) -> None:
        """Send the dispatcher the credits acknowledged since the last time, or (hello)
        how many messages this worker can take now."""
        assert self.socket is not None
        with self._lock:
            acked = self._acked
        if hello:
            kind, count = HELLO, self.credit - (self.delivered - acked)
        else:
            kind, count = CREDIT, acked - self._sent_back
            if not count:
                return
        self._sent_back = acked
        try:
            self.socket.send_multipart([kind, str(max(0, count)).encode()], NOBLOCK)
        except zmq.Again:
            log.warning("%s: could not give %d credit(s) back (queue to the dispatcher full)",
                        self.link, count)

    def run_state(self, in_run: bool) -> None:
        self.tracker.run_state(in_run)

    def close(self) -> None:
        if self.socket is not None:
            self.tracker.stop(self.socket)
            self.socket.close(linger=0)
            self.socket = None
            if self.curve is not None:
                self.curve.release()
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)

    def status(self) -> dict[str, Any]:
        with self._lock:
            acked = self._acked
        return {**self.tracker.stats(), "pattern": self.pattern,
                "pool": {"credit": self.credit, "held": self.delivered - acked}}


def recv_frames_nowait(socket: zmq.Socket) -> list[zmq.Frame]:
    """One whole message if one is there (zmq.Again if not): the later parts of a
    multipart message are there once its first is."""
    frame = socket.recv(NOBLOCK, copy=False)
    if not frame.more:
        return [frame]
    return [frame, *recv_frames(socket)]
