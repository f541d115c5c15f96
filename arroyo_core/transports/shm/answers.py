"""What a reliable shm receiver tells its sender (acknowledgements and hellos,
:mod:`.control`'s ``A`` messages), queued from any thread for the receiving thread, the
only one that uses the control socket; a pipe wakes that thread while it sleeps in poll."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import zmq

from . import control

ACK_DELAY_S = 0.002  # acknowledgements are sent together, at most this late


class Answers:
    """Answers waiting to be sent: the newest acknowledgement per sender (they are
    cumulative) and every hello, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._acks: dict[str, int] = {}  # under _lock
        self._hellos: list[tuple[str, int]] = []  # under _lock
        self._last_ack = 0.0
        self._sleeping = False  # under _lock: the receiving thread is (about to be) in poll
        self._woken = False  # under _lock: the pipe was written to since the poll began
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.acks_sent = 0
        self.closed = False  # under _lock: the pipe's descriptors are no longer ours

    def put(self, kind: str, src: str, seq: int) -> None:
        """Queue an answer (any thread)."""
        with self._lock:
            if kind == "ack":
                self._acks[src] = seq
            else:
                self._hellos.append((src, seq))
            # Only a thread asleep in poll is woken: a busy one sends at its next turn.
            if not self._sleeping or self._woken or self.closed:
                return
            self._woken = True
            try:
                os.write(self.wake_w, b"x")
            except OSError:
                pass  # the pipe is full: the receiver is awake anyway

    def pending(self) -> bool:
        return bool(self._acks or self._hellos)

    def sleep_ms(self, longest: int) -> int:
        """How long the receiving thread may sleep in poll; from now on, put() wakes it."""
        with self._lock:
            self._sleeping = True
            if self._hellos:
                return 0
            if self._acks:
                due = self._last_ack + ACK_DELAY_S - time.monotonic()
                return min(longest, max(0, int(due * 1000)) + 1)
            return longest

    def awake(self, ready: dict[Any, int]) -> None:
        """The receiving thread is back from poll (``ready``: what poll returned)."""
        with self._lock:
            self._sleeping = self._woken = False
        if self.wake_r in ready:
            try:
                os.read(self.wake_r, 4096)
            except BlockingIOError:
                pass

    def flush(self, socket: zmq.Socket, force: bool = False) -> None:
        """Send the hellos now, and the acknowledgements if ACK_DELAY_S has passed."""
        now = time.monotonic()
        with self._lock:
            hellos, self._hellos = self._hellos, []
            acks: dict[str, int] = {}
            if self._acks and (force or now - self._last_ack >= ACK_DELAY_S):
                acks, self._acks = self._acks, {}
                self._last_ack = now
        said = [("hello", src, seq) for src, seq in hellos]
        said += [("ack", src, seq) for src, seq in acks.items()]
        for kind, src, seq in said:
            try:
                socket.send_multipart(control.answer(kind, src, seq), zmq.NOBLOCK)
                self.acks_sent += kind == "ack"
            except zmq.ZMQError:
                pass  # no sender now: acknowledgements are cumulative, hellos repeat

    def close(self) -> None:
        with self._lock:
            self.closed = True
            for fd in (self.wake_r, self.wake_w):
                os.close(fd)
