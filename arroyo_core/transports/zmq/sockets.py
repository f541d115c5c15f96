"""Socket helpers every ZeroMQ link uses: the per-message send and receive (cheaper than
pyzmq's multipart calls), and opening a configured, monitored, secured socket."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import zmq

from ...address import Address
from ...errors import ConfigError
from .connections import ConnectionTracker
from .curve import CurveLink

log = logging.getLogger(__name__)

POLL_MS = 100  # how often blocked loops look at their stop flag
HEARTBEAT_TIMEOUT_MS = 60_000
# How soon a connecting socket tries again after its peer went away: at first after
# RECONNECT_IVL_MS, then doubling up to RECONNECT_IVL_MAX_MS. Kept low, because a stage
# that supervisor restarts is back within a second and every stage next to it should see it
# at once (a cap of 2 s made a restart take up to 2 s longer); an attempt every quarter of a
# second at a peer that is down costs nothing measurable.
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 250
# Plain ints: or-ing or and-ing pyzmq's Flag enums (an int with one of them too) builds an
# enum member in Python code, a microsecond each time.
NOBLOCK, SNDMORE = int(zmq.NOBLOCK), int(zmq.SNDMORE)
EVENTS, POLLIN, POLLOUT = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.POLLOUT)
ZERO_COPY_BYTES = zmq.COPY_THRESHOLD  # pyzmq copies smaller frames anyway


# pyzmq's send itself, below the Python layer that adds DRAFT sockets' routing_id and group
# (unused here): 0.5 us a frame against 1.3 us.
_send = zmq.backend.Socket.send


def send_frames(socket: zmq.Socket, frames: list[Any], flags: int = 0) -> None:
    """``send_multipart(frames, flags, copy=False)`` at a quarter of its cost for small
    messages (it type-checks every part and or-s enum flags per part).

    Every part must support the buffer protocol (``wire.encode`` makes sure): a part that
    failed after the first had gone would leave a half-sent message on the socket. Only
    the first part can raise zmq.Again; ZeroMQ then has sent nothing.
    """
    more = flags | SNDMORE
    for frame in frames[:-1]:
        _send(socket, frame, more, False)
    _send(socket, frames[-1], flags, False)


def readable(socket: zmq.Socket) -> bool:
    """Whether a message waits on ``socket`` (a getsockopt: less than a poll or a zmq.Again
    raised)."""
    return bool(int(socket.get(EVENTS)) & POLLIN)


def reuse_received(frames: list[Any]) -> None:
    """Replace each large frame after the header by the received Frame it views, if any
    (:func:`received_frame`), in place: what a sender does before sending."""
    for index in range(1, len(frames)):
        if len(frames[index]) >= ZERO_COPY_BYTES:
            frames[index] = received_frame(frames[index])


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


def zmq_address(address: Address) -> str:
    """The address as libzmq reads it; ConfigError for what it cannot use, so ``--check``
    catches a bad address without opening a socket."""
    if address.scheme == "tcp" and (not address.port or not address.host):
        raise ConfigError(f"{address.text!r} is not a valid address: tcp needs host:port "
                          "(port '*' binds an ephemeral port)")
    if address.query:
        raise ConfigError(f"{address.text!r} is not a valid address: ZeroMQ addresses take "
                          "no ?query; give link options as options")
    return address.text


def open_socket(kind: int, address: Address, options: dict[int, Any], role: str, *,
                curve: CurveLink | None = None,
                tracker: ConnectionTracker | None = None) -> zmq.Socket:
    """Create, configure and bind/connect a socket; raise ConfigError naming the address.

    ``curve`` secures it and ``tracker`` watches its connections, both from before the
    first peer can connect.
    """
    socket: zmq.Socket = zmq.Context.instance().socket(kind)
    try:
        for option, value in options.items():
            socket.setsockopt(option, value)
        if curve is not None:
            curve.secure(socket, tracker)
        if tracker is not None:
            tracker.start(socket)
        if address.bind:
            socket.bind(address.text)
        else:
            socket.connect(address.text)
    except (zmq.ZMQError, ConfigError) as exc:
        if tracker is not None:
            tracker.stop(socket)
        socket.close(linger=0)
        if curve is not None:
            curve.release()
        verb = "bind" if address.bind else "connect"
        raise ConfigError(f"{role}: cannot {verb} {address.text}: {exc}") from None
    if address.bind:
        log.info("%s bound to %s", role, bound_address(socket))
    else:
        log.info("%s connecting to %s", role, address.text)
    return socket


def bound_address(socket: zmq.Socket) -> str:
    """The address a bound socket listens at, a wildcard port resolved (``tcp://*:*``
    reads ``tcp://0.0.0.0:40123``)."""
    return socket.getsockopt_string(zmq.LAST_ENDPOINT)


def link_options(hwm_option: int, hwm: int, linger_ms: int, heartbeat_ms: int,
                 heartbeat_timeout_ms: int = HEARTBEAT_TIMEOUT_MS) -> dict[int, Any]:
    """Socket options every link sets.

    How a dead peer is noticed (docs/reliability.md): one that exits or crashes closes
    its connection and the monitor logs it at once; a vanished host or cable is found by
    TCP keepalive within about 4 s while the link is idle (the peer's kernel answers
    keepalives even when the peer process is paused, so a held-back peer is never cut);
    a peer silent for heartbeat_timeout_ms is disconnected by ZeroMQ's heartbeat, and
    what was queued for it is lost (counted downstream). That includes a live peer whose
    input was held back that long, hence the long default. (TCP_USER_TIMEOUT would cut a
    held-back peer after its timeout too: Linux applies it to a zero receive window.)
    """
    options = {
        hwm_option: hwm,
        zmq.LINGER: linger_ms,
        zmq.RECONNECT_IVL: RECONNECT_IVL_MS,
        zmq.RECONNECT_IVL_MAX: RECONNECT_IVL_MAX_MS,
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
