"""The shm receiver: a DEALER that says who it is, takes slot references, and tells the
sender what it took."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from ...address import Address
from ...errors import ConfigError, DecodeError
from ...transport import FrameReceiver, Frames, WaitLog
from ...wire import DEFAULT_LIMITS
from ..answers import Answers
from . import control
from .attached import ATTACHED
from .processes import host_key, this_process
from .sockets import POLL_MS, open_socket, shown_address

log = logging.getLogger(__name__)

PATTERNS = ("pull", "sub")
OWNER_CHECK_S = 1.0  # how often mapped pools are checked for a dead owner


class ShmReceiver(FrameReceiver):
    """Receives through shared memory from one sender on this host.

    Arrays arrive as read-only views on the sender's slots; each holds its slot until it
    and every array made from it are gone, so keep a frame (``.copy()`` it) only if you
    mean to hold the slot. An input takes one sender (outputs bind, inputs connect).

    Parameters
    ----------
    pattern
        ``pull`` or ``sub``: what the sender's pattern gives (accepted for chain files
        that name it; the sender decides who gets what).
    max_message_bytes
        Larger messages are rejected (counted as malformed, reason ``size``) unread.
    hwm, max_bytes, message_bytes, peers
        Accepted as a tcp link's, so a chain file runs on either: the sender's pool and
        its ``hwm`` bound what is held on this side.
    """

    def __init__(self, address: Address, link: str, pattern: str = "pull",
                 max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes, hwm: int = 100,
                 max_bytes: Any = None, message_bytes: Any = None, peers: int = 1) -> None:
        if pattern not in PATTERNS:
            raise ConfigError(f"input pattern {pattern!r} is not one of {list(PATTERNS)}")
        self.address = address
        self.link = link
        self.pattern = pattern
        self.max_message_bytes = int(max_message_bytes)
        self.socket: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None
        self.connected = 0
        self.rejected = 0
        self.answers: Answers | None = None  # a reliable link's (.reliable)

    def open(self) -> None:
        me = this_process()
        ident = f"{me.pid}.{me.start}.{os.urandom(4).hex()}".encode()

        def watch(socket: zmq.Socket) -> None:
            self.monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED
                                                     | zmq.EVENT_DISCONNECTED)

        socket = open_socket(zmq.DEALER, self.address, f"{self.pattern} shm input",
                             {zmq.IDENTITY: ident}, before=watch)
        self.socket = socket
        if self.address.bind:
            self.bound = shown_address(socket)

    def receive(self, stop: threading.Event) -> Iterator[tuple[Frames | DecodeError, Any]]:
        socket, monitor = self.socket, self.monitor
        assert socket is not None and monitor is not None, "receive() before open()"
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        answers = self.answers
        if answers is not None:
            poller.register(answers.wake_r, zmq.POLLIN)
        hello = control.hello(this_process(), host_key())
        waiting = WaitLog()
        next_check = time.monotonic() + OWNER_CHECK_S
        while not stop.is_set():
            if answers is None:
                ready = dict(poller.poll(POLL_MS))
            else:
                answers.flush(socket)
                ready = dict(poller.poll(answers.sleep_ms(POLL_MS)))
                answers.awake(ready)
            if monitor in ready:
                self._connections(monitor, hello)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + OWNER_CHECK_S
                ATTACHED.forget_dead_owners()
            if socket not in ready:
                if self.connected:
                    waiting.reset()
                elif waiting.due():
                    log.info("%s: no sender for %.0f s at %s", self.link, waiting.waited,
                             self.address.base)
                continue
            while not stop.is_set():
                try:
                    raw = socket.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                yield self._read(raw), None
                if answers is not None and time.monotonic() >= answers.due:
                    answers.flush(socket)

    def _connections(self, monitor: zmq.Socket, hello: list[bytes]) -> None:
        while monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected += 1
                assert self.socket is not None
                self.socket.send_multipart(hello)  # each connection: a restarted sender too
                if self.on_connect is not None:
                    self.on_connect()  # a reliable link says hello too
            elif event == zmq.EVENT_DISCONNECTED:
                self.connected = max(0, self.connected - 1)

    def _read(self, raw: list[zmq.Frame]) -> Frames | DecodeError:
        socket = self.socket
        assert socket is not None
        try:
            message_id, frames, refs = control.read_message([f.buffer for f in raw])
        except DecodeError as exc:
            return exc
        try:
            size = sum(r.length for r in refs if r is not None) + sum(
                memoryview(f).nbytes for f in frames if f is not None)
            if size > self.max_message_bytes:
                raise DecodeError("size", f"message of {size} bytes exceeds "
                                  f"{self.max_message_bytes}")
            for index, ref in enumerate(refs, 1):
                if ref is not None:
                    frames[index] = ATTACHED.take(ref)
            return frames
        except DecodeError as exc:
            self.rejected += 1
            return exc
        finally:  # held by us now (or never to be): the sender may forget it
            socket.send_multipart(control.took([message_id]))

    def close(self) -> None:
        if self.socket is None:
            return
        if self.answers is not None:
            self.answers.flush(self.socket, force=True)  # what is finished, said before going
            self.answers.close()
        try:
            self.socket.send_multipart([control.BYE], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # no sender connected: nobody to tell
        if self.monitor is not None:
            self.socket.disable_monitor()
            self.monitor.close(linger=0)
            self.monitor = None
        self.socket.close(linger=200)  # the bye (and the last "took") on their way
        self.socket = None

    def status(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "peers": {"peers": self.connected},
                "rejected": self.rejected, "pools": ATTACHED.status()}
