"""ZeroMQ links: a Publisher that sends Arroyo messages on a PUSH or PUB socket, and a
Listener that receives them on a PULL or SUB socket.

An endpoint with a leading ``@`` binds and one with ``>`` connects (the CZMQ convention);
without either, outputs bind and inputs connect. On PUB/SUB the first frame is the topic.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from ..budget import LinkBudget, frames_nbytes
from ..components import Deliver, Listener, Publisher
from ..errors import ConfigError, DecodeError
from ..ledger import InputLedger, OutputLedger
from ..message import Message
from ..wire import DEFAULT_LIMITS, Limits, decode, encode
from .curve import CurveLink
from .handoff import Handoff
from .lag import LagWatch
from .peers import wait_for_count
from .socket_monitor import SocketMonitor

log = logging.getLogger(__name__)

# PUB is an XPUB so that subscriptions are seen (no slow-joiner loss) and so that, with
# XPUB_NODROP, a full subscriber makes send fail instead of dropping the message unseen.
OUTPUT_TYPES = {"push": zmq.PUSH, "pub": zmq.XPUB}
OVERFLOW = ("block", "drop-newest")
INPUT_TYPES = {"pull": zmq.PULL, "sub": zmq.SUB}
POLL_MS = 100  # how often blocked loops look at their stop flag
FRAME_CEILING = 16  # libzmq's MAXMSGSIZE, in multiples of a listener's max_message_bytes
# Plain ints: or-ing pyzmq's Flag enums builds an enum member, a microsecond per frame.
_NOBLOCK, _SNDMORE = int(zmq.NOBLOCK), int(zmq.SNDMORE)
ZERO_COPY_BYTES = zmq.COPY_THRESHOLD  # pyzmq copies smaller frames anyway


def send_frames(socket: zmq.Socket, frames: list[Any], flags: int = 0) -> None:
    """``send_multipart(frames, flags, copy=False)`` at a quarter of its cost for small
    messages (it type-checks every part and or-s enum flags per part).

    Every part must support the buffer protocol (``wire.encode`` makes sure): a part that
    failed after the first had gone would leave a half-sent message on the socket. Only
    the first part can raise zmq.Again; ZeroMQ then has sent nothing.
    """
    send = socket.send
    for frame in frames[:-1]:
        send(frame, flags | _SNDMORE, copy=False)
    send(frames[-1], flags, copy=False)


def received_frame(buffer: Any) -> Any:
    """The received zmq.Frame that ``buffer`` views from end to end, else ``buffer``.

    Sending that Frame hands libzmq another reference to the same memory. Sending the view
    instead makes pyzmq wrap it and, once libzmq is done, release it through pyzmq's
    garbage-collector thread: a thread wake-up per large message forwarded.
    """
    owner = buffer
    while True:
        if isinstance(owner, np.ndarray):
            owner = owner.base
        elif isinstance(owner, memoryview):
            owner = owner.obj
        else:
            break
    if isinstance(owner, zmq.Frame) and len(owner) == memoryview(buffer).nbytes:
        return owner
    return buffer


def recv_frames(socket: zmq.Socket) -> list[zmq.Frame]:
    """``recv_multipart(copy=False)`` at a third of its cost: each received Frame already
    knows whether more parts follow, so no getsockopt(RCVMORE) per part."""
    recv = socket.recv
    frame = recv(copy=False)
    frames = [frame]
    while frame.more:
        frame = recv(copy=False)
        frames.append(frame)
    return frames


_ADDRESS = re.compile(r"^(tcp|ipc|inproc|pgm|epgm|norm|tipc|vmci|ws|wss|udp)://\S+$")
_TCP_PORT = re.compile(r":([0-9]{1,5}|\*)$")  # '*' binds an ephemeral port


@dataclass(frozen=True)
class Endpoint:
    """A ZeroMQ address and whether this side binds or connects to it."""

    address: str
    bind: bool

    @classmethod
    def parse(cls, text: str, bind_by_default: bool) -> Endpoint:
        """Read ``[@|>]transport://address``; raise ConfigError for what ZeroMQ cannot use,
        so ``--check`` catches a bad address without opening a socket."""
        if text.startswith("@"):
            endpoint = cls(text[1:], True)
        elif text.startswith(">"):
            endpoint = cls(text[1:], False)
        else:
            endpoint = cls(text, bind_by_default)
        if not _ADDRESS.match(endpoint.address) or (
                endpoint.address.startswith("tcp://") and not _TCP_PORT.search(endpoint.address)):
            raise ConfigError(f"endpoint {text!r} is not a ZeroMQ address such as "
                              "tcp://host:port, ipc:///path or inproc://name")
        return endpoint

    def __str__(self) -> str:
        return ("@" if self.bind else ">") + self.address


def new_sender_id() -> str:
    """A sender id that differs across restarts, so a restarted sender starts a new sequence."""
    return f"{os.getpid():x}-{uuid.uuid4().hex[:8]}"


def open_socket(kind: int, endpoint: Endpoint, options: dict[int, Any], role: str, *,
                curve: CurveLink | None = None,
                monitor: SocketMonitor | None = None) -> zmq.Socket:
    """Create, configure and bind/connect a socket; raise ConfigError naming the endpoint.

    ``curve`` secures it and ``monitor`` watches its connections, both from before the
    first peer can connect.
    """
    socket: zmq.Socket = zmq.Context.instance().socket(kind)
    try:
        for option, value in options.items():
            socket.setsockopt(option, value)
        if curve is not None:
            curve.secure(socket)
        if monitor is not None:
            monitor.start(socket)
        if endpoint.bind:
            socket.bind(endpoint.address)
        else:
            socket.connect(endpoint.address)
    except (zmq.ZMQError, ConfigError) as exc:
        if monitor is not None:
            monitor.stop(socket)
        socket.close(linger=0)
        if curve is not None:
            curve.release()
        verb = "bind" if endpoint.bind else "connect"
        raise ConfigError(f"{role}: cannot {verb} {endpoint.address}: {exc}") from None
    log.info("%s %s %s", role, "bound to" if endpoint.bind else "connecting to", endpoint.address)
    return socket


HEARTBEAT_TIMEOUT_MS = 60_000


def _link_options(hwm_option: int, hwm: int, linger_ms: int, heartbeat_ms: int,
                  heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS) -> dict[int, Any]:
    # How a dead peer is noticed (docs/reliability.md): one that exits or crashes closes
    # its connection and the monitor logs it at once; a vanished host or cable is found by
    # TCP keepalive within about 4 s while the link is idle (the peer's kernel answers
    # keepalives even when the peer process is paused, so a held-back peer is never cut);
    # a peer silent for heartbeat_timeout_ms is disconnected by ZeroMQ's heartbeat, and
    # what was queued for it is lost (counted downstream). That includes a live peer whose
    # input was held back that long, hence the long default. (TCP_USER_TIMEOUT would cut a
    # held-back peer after its timeout too: Linux applies it to a zero receive window.)
    options = {
        hwm_option: hwm,
        zmq.LINGER: linger_ms,
        zmq.RECONNECT_IVL: 100,
        zmq.RECONNECT_IVL_MAX: 2000,
        zmq.TCP_KEEPALIVE: 1,
        zmq.TCP_KEEPALIVE_IDLE: 1,
        zmq.TCP_KEEPALIVE_INTVL: 1,
        zmq.TCP_KEEPALIVE_CNT: 3,
    }
    if heartbeat_ms:
        options.update({zmq.HEARTBEAT_IVL: heartbeat_ms,
                        zmq.HEARTBEAT_TIMEOUT: heartbeat_timeout_ms,
                        zmq.HEARTBEAT_TTL: heartbeat_timeout_ms})
    return options


class ZmqPublisher(Publisher):
    """Sends Arroyo messages on a PUSH (default) or PUB socket.

    Parameters
    ----------
    endpoint
        ``@tcp://*:5555`` to bind (the default for outputs), ``>tcp://host:5555`` to connect.
    pattern
        ``push`` (each message to one puller) or ``pub`` (every subscriber gets it).
    topic
        First frame of every message on ``pub``.
    hwm
        Messages queued per peer before the overflow policy applies.
    overflow
        ``block`` waits for the peer (back-pressure), ``drop-newest`` (or ``drop``)
        discards the event that does not fit and counts it; Start and Stop always wait.
        Either way nothing is lost unseen. (ZeroMQ cannot take back a queued message, so
        drop-oldest and keep-latest are receiving-side queue policies.)
    subscribers
        On ``pub``: how many subscribers must have subscribed before a run starts, so
        a late joiner does not miss the first messages.
    peers
        How many connected peers a run waits for before its Start is sent (on ``push``,
        so the first messages are shared among all the pullers, not given to the first
        one to connect; on ``pub``, in addition to ``subscribers``). 0: do not wait.
    peer_timeout
        Seconds to wait for those subscribers or peers before starting anyway (0: forever).
    linger_ms
        How long ``close`` waits for peers to take what was sent: ZeroMQ's queue, then
        the kernels' buffers (:mod:`arroyo_core.transports.handoff`). It returns as soon
        as every peer has read everything.
    heartbeat_ms, heartbeat_timeout_ms
        ZeroMQ heartbeats: a ping every ``heartbeat_ms``; a peer silent for
        ``heartbeat_timeout_ms`` is disconnected (and logged). What was queued for it is
        lost, so keep the timeout above the longest time a healthy peer may be held back
        (a peer that exits, crashes or whose host vanishes is noticed sooner: see
        ``_link_options``).
    max_bytes, message_bytes
        A byte budget for what this link queues: sets the high-water mark from the
        (expected or observed) message size; see :mod:`arroyo_core.budget`.
    curve_secret_key_file, curve_allow, curve_server_key_file
        CURVE encryption and client allow-list; see :mod:`arroyo_core.transports.curve`.
    """

    def __init__(self, endpoint: str, pattern: str = "push", topic: str = "arroyo",
                 hwm: int = 100, overflow: str = "block", subscribers: int = 1,
                 peer_timeout: float = 30.0, linger_ms: int = 10_000,
                 heartbeat_ms: int = 1000, curve_secret_key_file: str | None = None,
                 curve_allow: Any = None, curve_server_key_file: str | None = None,
                 peers: int = 0, heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
                 max_bytes: Any = None,
                 message_bytes: Any = None) -> None:
        if pattern not in OUTPUT_TYPES:
            raise ConfigError(f"output pattern {pattern!r} is not one of {sorted(OUTPUT_TYPES)}")
        if overflow not in OVERFLOW:
            raise ConfigError(f"overflow {overflow!r} is not one of {OVERFLOW}")
        self.endpoint = Endpoint.parse(endpoint, bind_by_default=True)
        self.pattern = pattern
        self.topic = topic.encode()
        self.overflow = overflow
        self.expected_subscribers = subscribers if pattern == "pub" else 0
        self.expected_peers = int(peers)
        self.peer_timeout = peer_timeout
        self.linger_s = linger_ms / 1000
        link = f"output {pattern} {self.endpoint}"
        self.budget = (LinkBudget(max_bytes, message_bytes, max(self.expected_peers,
                                                                self.expected_subscribers), link)
                       if max_bytes else None)
        if self.budget is not None:
            hwm = self.budget.hwm(hwm)
        self.options = _link_options(zmq.SNDHWM, hwm, linger_ms, heartbeat_ms,
                                     heartbeat_timeout_ms)
        if pattern == "pub":
            self.options.update({zmq.XPUB_NODROP: 1, zmq.XPUB_VERBOSE: 1, zmq.XPUB_VERBOSER: 1})
        self.src = new_sender_id()
        self.seq = 0
        self.subscribers = 0
        self.ledger = OutputLedger(f"output {self.pattern} {self.endpoint}")
        self.curve = CurveLink.from_options(self.ledger.link, self.endpoint.address,
                                            self.endpoint.bind, curve_secret_key_file,
                                            curve_server_key_file, curve_allow)
        self.monitor = SocketMonitor(self.ledger.link)
        self.socket: zmq.Socket | None = None
        self._abandoned = False

    def open(self) -> None:
        self.socket = open_socket(OUTPUT_TYPES[self.pattern], self.endpoint, self.options,
                                  f"{self.pattern} output", curve=self.curve,
                                  monitor=self.monitor)
        self.socket.sndtimeo = POLL_MS  # _send waits inside send, a poll interval at a time

    def publish(self, message: Message) -> None:
        if self.expected_subscribers:
            self._read_subscriptions()
            if message.kind == "start" and self.subscribers < self.expected_subscribers:
                self._wait_for_subscribers()
            elif not self.subscribers and message.kind == "event":
                self.ledger.drop("no subscriber")  # XPUB would discard it, unseen
                return
        if self.expected_peers and message.kind == "start":
            self._wait_for_peers()
        frames = encode(message, src=self.src, seq=self.seq)
        for index in range(1, len(frames)):
            if len(frames[index]) >= ZERO_COPY_BYTES:
                frames[index] = received_frame(frames[index])
        if self.budget is not None:
            self._fit_budget(frames)
        if self.pattern == "pub":
            frames.insert(0, self.topic)
        if self._send(frames, message.kind == "event"):
            self.seq += 1
            self.ledger.sent += 1

    def _wait_for_peers(self) -> None:
        assert self.socket is not None
        self.monitor.peers.wait_for(self.expected_peers, self.peer_timeout,
                                    lambda: self._abandoned)
        # libzmq attaches a new peer's queue when the socket next processes its commands,
        # which reading EVENTS does at once: the Start then goes to an attached peer.
        self.socket.getsockopt(zmq.EVENTS)

    def _fit_budget(self, frames: list[Any]) -> None:
        assert self.socket is not None and self.budget is not None
        hwm = self.budget.observe(frames_nbytes(frames))
        if hwm is not None:
            self.socket.setsockopt(zmq.SNDHWM, hwm)

    def _read_subscriptions(self) -> None:
        """Count (un)subscriptions to our topic that the XPUB socket has queued."""
        assert self.socket is not None
        while True:
            try:
                note = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if note[1:] and not self.topic.startswith(note[1:]):
                continue  # a subscription that does not match our messages
            change = 1 if note[:1] == b"\x01" else -1
            self.subscribers = max(0, self.subscribers + change)
            log.info("%s: subscriber %s, now %d", self.ledger.link,
                     "joined" if change > 0 else "left", self.subscribers)

    def _wait_for_subscribers(self) -> None:
        socket = self.socket
        assert socket is not None

        def pause() -> None:
            if socket.poll(POLL_MS, zmq.POLLIN):
                self._read_subscriptions()

        wait_for_count(lambda: self.subscribers, self.expected_subscribers, self.peer_timeout,
                       pause, lambda: self._abandoned, self.ledger.link, "subscriber(s)")

    def _send(self, frames: list[Any], droppable: bool = True) -> bool:
        socket = self.socket
        assert socket is not None, "publish() before open()"
        # To wait, send blocks (SNDTIMEO is POLL_MS) rather than failing at once and
        # polling: a peer slower than us, the usual lot of a source, would otherwise cost
        # a raised zmq.Again and a poll per message, as much CPU as encoding one.
        dropping = self.overflow == "drop-newest" and droppable  # a lost Start/Stop corrupts a run
        try:
            send_frames(socket, frames, _NOBLOCK if dropping else 0)
            return True
        except zmq.Again:
            if dropping:
                self.ledger.drop("peer's queue full")
                return False
        log.debug("%s: no peer is taking messages; waiting", self.ledger.link)
        while not self._abandoned:
            if self.expected_subscribers:
                self._read_subscriptions()
            try:
                send_frames(socket, frames)
                return True
            except zmq.Again:
                continue
        self.ledger.drop("no peer took it before shutdown")
        return False

    def abandon(self) -> None:
        self._abandoned = True

    def close(self) -> None:
        if self.socket is not None:
            deadline = time.monotonic() + self.linger_s
            handoff = None
            if not self._abandoned:  # see handoff.py: peers must read all before we go
                handoff = Handoff(self.monitor.peers.connections(), self.ledger.link)
            self.monitor.stop(self.socket)
            self.socket.close(linger=0 if self._abandoned else int(self.linger_s * 1000))
            self.socket = None
            if self.curve is not None:
                self.curve.release()
            if handoff:
                handoff.wait_released(deadline, lambda: self._abandoned)
                handoff.finish(deadline, lambda: self._abandoned)
            elif handoff is not None:
                handoff.close()

    def stats(self) -> dict[str, Any]:
        stats = {**self.ledger.stats(), **self.monitor.stats(), "src": self.src,
                 "subscribers": self.subscribers, "overflow": self.overflow}
        if self.budget is not None:
            stats["budget"] = self.budget.stats()
        return stats


class ZmqListener(Listener):
    """Receives Arroyo messages on a PULL (default) or SUB socket.

    Malformed messages are counted by reason and logged once; valid ones around them
    still arrive, also around a message over ``max_message_bytes`` (counted as ``size``).
    Arrays are views on the received frames (no copy). Only a frame over
    ``FRAME_CEILING * max_message_bytes`` makes libzmq close its connection (losing what
    was in flight on it, which the ledger shows as missing); a connecting listener then
    connects again.
    ``curve_*`` options: see :mod:`arroyo_core.transports.curve`.

    ``max_bytes``/``message_bytes`` bound what the link queues in bytes (see
    :mod:`arroyo_core.budget`; ``peers`` is how many senders feed it, each with its own
    queue). ``max_lag`` (seconds, 0: off) reports a link that falls further behind its
    sender than that, and with ``on_lag="disconnect"`` ends it loudly (the service exits
    non-zero) instead (see :mod:`arroyo_core.transports.lag`). ``heartbeat_ms`` and
    ``heartbeat_timeout_ms`` are as on :class:`ZmqPublisher`, but off by default: the
    sender's heartbeats are answered anyway, and libzmq 4.3.5 aborts a receiving process
    whose own heartbeat fires after a held-back connection's peer went away
    (``Assertion failed: !_io_error``).
    """

    def __init__(self, endpoint: str, pattern: str = "pull", topic: str = "arroyo",
                 hwm: int = 100, heartbeat_ms: int = 0,
                 max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes,
                 curve_secret_key_file: str | None = None, curve_allow: Any = None,
                 curve_server_key_file: str | None = None,
                 heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS,
                 max_bytes: Any = None, message_bytes: Any = None, peers: int = 1,
                 max_lag: float = 0.0, on_lag: str = "warn") -> None:
        if pattern not in INPUT_TYPES:
            raise ConfigError(f"input pattern {pattern!r} is not one of {sorted(INPUT_TYPES)}")
        self.endpoint = Endpoint.parse(endpoint, bind_by_default=False)
        self.pattern = pattern
        self.topic = topic.encode()
        self.limits = Limits(max_message_bytes=max_message_bytes)
        link = f"input {pattern} {self.endpoint}"
        self.budget = LinkBudget(max_bytes, message_bytes, peers, link) if max_bytes else None
        if self.budget is not None:
            hwm = self.budget.hwm(hwm)
        self.lag = LagWatch(link, max_lag, on_lag) if max_lag else None
        self.options = _link_options(zmq.RCVHWM, hwm, 0, heartbeat_ms, heartbeat_timeout_ms)
        # The decoder rejects and counts a message over max_message_bytes and the stream
        # goes on; libzmq instead drops the connection (and what is in flight on it) for a
        # frame over MAXMSGSIZE, so that is only a ceiling against absurd allocations.
        frame_ceiling = FRAME_CEILING * max_message_bytes
        self.options[zmq.MAXMSGSIZE] = frame_ceiling
        if pattern == "sub":
            self.options[zmq.SUBSCRIBE] = self.topic
        self.ledger = InputLedger(f"input {self.pattern} {self.endpoint}")
        self.curve = CurveLink.from_options(self.ledger.link, self.endpoint.address,
                                            self.endpoint.bind, curve_secret_key_file,
                                            curve_server_key_file, curve_allow)
        self.monitor = SocketMonitor(self.ledger.link, frame_ceiling)
        self.socket: zmq.Socket | None = None

    def open(self) -> None:
        self.socket = open_socket(INPUT_TYPES[self.pattern], self.endpoint, self.options,
                                  f"{self.pattern} input", curve=self.curve,
                                  monitor=self.monitor)

    def start(self, deliver: Deliver) -> None:
        socket = self.socket
        assert socket is not None, "start() before open()"
        stop_requested = self.stop_requested
        has_topic = self.pattern == "sub"
        watched = self.budget is not None or self.lag is not None
        # Wait inside a receive that times out, not in poll after a NOBLOCK receive: when
        # messages come slower than we take them, that raised zmq.Again for every message.
        socket.rcvtimeo = POLL_MS
        while not stop_requested.is_set():
            try:
                frames = recv_frames(socket)
            except zmq.Again:
                self.monitor.reconnect_dropped(socket, self.endpoint.address)
                continue
            if has_topic:
                frames = frames[1:]
            try:
                message, envelope = decode(frames, self.limits)
            except DecodeError as exc:
                self.ledger.reject(exc.reason, str(exc))
                continue
            if watched:
                self._watch(frames, envelope.time)
            if self.ledger.observe(envelope.src, envelope.seq):
                deliver(message)

    def _watch(self, frames: list[Any], sent_time: float) -> None:
        """Keep the byte budget and the lag limit (only when one is configured)."""
        if self.budget is not None:
            hwm = self.budget.observe(frames_nbytes(frames))
            if hwm is not None:
                assert self.socket is not None
                self.socket.setsockopt(zmq.RCVHWM, hwm)
        if self.lag is not None:
            self.lag.observe(sent_time)  # may raise FallenBehindError: the service ends

    def close(self) -> None:
        if self.socket is not None:
            self.monitor.stop(self.socket)
            self.socket.close(linger=0)
            self.socket = None
            if self.curve is not None:
                self.curve.release()

    def stats(self) -> dict[str, Any]:
        stats = {**self.ledger.stats(), **self.monitor.stats()}
        if self.budget is not None:
            stats["budget"] = self.budget.stats()
        if self.lag is not None:
            stats.update(self.lag.stats())
        return stats
