"""A transport written outside Arroyo, as a user's package would write one: ``frames://``
moves multipart messages over one plain TCP connection (Python's ``socket``, no ZeroMQ).
Registered through its own distribution's ``arroyo.transports`` entry point.

On the wire: a 4-byte frame count, an 8-byte length per frame, then the frames. The
sending side binds (``@frames://host:port``; port 0 lets the system pick one, which the
sender then gives as ``bound``), the receiving side connects.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

from arroyo_core.address import Address
from arroyo_core.errors import ConfigError
from arroyo_core.transport import FrameReceiver, FrameSender, Transport

WAIT_S = 0.1


class FramesSender(FrameSender):
    def __init__(self, address: Address) -> None:
        if not address.bind:
            raise ConfigError("frames:// outputs bind (@frames://host:port)")
        self.address = address
        self.listener: socket.socket | None = None
        self.peer: socket.socket | None = None
        self.abandoned = threading.Event()

    def open(self) -> None:
        self.listener = socket.create_server((self.address.host, int(self.address.port)))
        self.listener.settimeout(WAIT_S)
        host, port = self.listener.getsockname()[:2]
        self.bound = f"frames://{host}:{port}"

    def send(self, frames: list[Any], droppable: bool) -> str | None:
        while self.peer is None:
            if self.abandoned.is_set():
                return "no peer before shutdown"
            try:
                self.peer, _ = self.listener.accept()  # type: ignore[union-attr]
            except TimeoutError:
                continue
        views = [memoryview(frame).cast("B") for frame in frames]
        head = struct.pack(f"<I{len(views)}Q", len(views), *(len(v) for v in views))
        self.peer.sendall(head)
        for view in views:
            self.peer.sendall(view)
        return None

    def abandon(self) -> None:
        self.abandoned.set()

    def close(self) -> None:
        for sock in (self.peer, self.listener):
            if sock is not None:
                sock.close()


class FramesReceiver(FrameReceiver):
    def __init__(self, address: Address, max_message_bytes: int) -> None:
        if address.bind:
            raise ConfigError("frames:// inputs connect (>frames://host:port)")
        self.address = address
        self.max_frame_bytes = max_message_bytes  # never allocate what the link would refuse

    def receive(self, stop: threading.Event) -> Iterator[tuple[list[Any], Any]]:
        while not stop.is_set():
            try:
                sock = socket.create_connection((self.address.host, int(self.address.port)),
                                                timeout=WAIT_S)
            except OSError:
                stop.wait(WAIT_S)
                continue
            with sock:
                while True:
                    head = _read(sock, 4, stop)
                    if head is None:
                        break
                    (count,) = struct.unpack("<I", head)
                    lengths = struct.unpack(f"<{count}Q", _read(sock, 8 * count, stop) or b"")
                    if max(lengths, default=0) > self.max_frame_bytes:
                        break  # a peer that does not speak our framing: drop it
                    frames = [_read(sock, length, stop) for length in lengths]
                    if any(frame is None for frame in frames):
                        break
                    yield frames, None


def _read(sock: socket.socket, size: int, stop: threading.Event) -> bytearray | None:
    """Exactly ``size`` bytes, or None at end of stream or on stop."""
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        try:
            n = sock.recv_into(view[got:])
        except TimeoutError:
            if stop.is_set():
                return None
            continue
        if n == 0:
            return None
        got += n
    return buffer


class FramesTransport(Transport):
    def sender(self, address: Address, options: dict[str, Any], link: str) -> FrameSender:
        if options:
            raise ConfigError(f"frames:// takes no options (got {sorted(options)})")
        return FramesSender(address)

    def receiver(self, address: Address, options: dict[str, Any], link: str) -> FrameReceiver:
        limit = options.pop("max_message_bytes")
        if options:
            raise ConfigError(f"frames:// takes no options (got {sorted(options)})")
        return FramesReceiver(address, limit)
