"""The control socket of a shm link: its ZeroMQ address, opening it, and a memory fence."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import zmq

from ...address import Address
from ...errors import ConfigError

log = logging.getLogger(__name__)

POLL_MS = 100  # how often blocked loops look at their stop flag
INLINE_BYTES = zmq.COPY_THRESHOLD  # smaller buffers cost less to copy than to place in a slot
ALIGN = 64  # buffers in a slot start on a cache line
_FENCE = threading.Lock()


def control_address(address: Address) -> str:
    """The ZeroMQ address of a shm address's control socket: ``shm://host:port`` is
    ``tcp://host:port``, ``shm:///path`` is ``ipc:///path``; ConfigError for others."""
    if address.host and address.port:
        if address.path not in ("", "/"):
            raise ConfigError(f"{address.text!r} is not a valid shm address: give "
                              "shm://host:port or shm:///path")
        host = f"[{address.host}]" if ":" in address.host else address.host
        return f"tcp://{host}:{address.port}"
    if not address.host and not address.port and address.path not in ("", "/"):
        return f"ipc://{address.path}"
    raise ConfigError(f"{address.text!r} is not a valid shm address: give shm://host:port "
                      "(port '*' binds a port the system picks) or shm:///path")


def shown_address(socket: zmq.Socket) -> str:
    """The shm address a bound control socket listens at, a picked port filled in."""
    endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    return "shm://" + endpoint.split("://", 1)[1]


def open_socket(kind: int, address: Address, role: str, options: dict[int, Any],
                before: Callable[[zmq.Socket], Any] = lambda socket: None) -> zmq.Socket:
    """Create, configure and bind/connect a control socket; ConfigError naming the address.
    ``before`` is called with it before it binds or connects (to start a monitor)."""
    target = control_address(address)
    socket: zmq.Socket = zmq.Context.instance().socket(kind)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, 0)  # control messages are small; slots bound the rest
        socket.setsockopt(zmq.RCVHWM, 0)
        socket.setsockopt(zmq.RECONNECT_IVL, 100)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, 250)
        for option, value in options.items():
            socket.setsockopt(option, value)
        before(socket)
        if address.bind:
            socket.bind(target)
        else:
            socket.connect(target)
    except zmq.ZMQError as exc:
        socket.close(linger=0)
        verb = "bind" if address.bind else "connect"
        raise ConfigError(f"{role}: cannot {verb} {target}: {exc}") from None
    log.info("%s %s %s", role, "bound to" if address.bind else "connecting to",
             shown_address(socket) if address.bind else target)
    return socket


def fence() -> None:
    """A full memory barrier (a locked instruction on x86): orders a store to a pool before
    the load that follows it, as the hold/generation handshake of pool.py needs."""
    _FENCE.acquire()
    _FENCE.release()
