"""What a reliable receiver tells its sender (acknowledgements and hellos), queued from
any thread for the receiving thread, the only one that uses the socket; a pipe wakes that
thread while it sleeps in poll. Used by the zmq and shm transports alike; each says how an
answer looks on its wire (``frames``)."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from ..reliable import ACK_BYTES, ACK_DELAY_S
from .zmq.sockets import NOBLOCK, send_frames


class Answers:
    """Answers waiting to be sent: the newest acknowledgement per sender (they are
    cumulative) and every hello, in order; ``token`` says which peer one goes to (a
    ROUTER's routing id; None: the only one). Acknowledgements go ACK_DELAY_S after the
    last ones, or at once when they cover ACK_BYTES.

    ``frames(token, kind, src, seq)`` makes an answer's frames. ``due``: from when (on
    the monotonic clock) :meth:`flush` has something to send; the receiving thread looks
    at it after every message, without the lock (what put() adds meanwhile goes at the
    next look).
    """

    def __init__(self, frames: Callable[[Any, str, str, int], list[bytes]]) -> None:
        self.frames = frames
        self._lock = threading.Lock()
        self._acks: dict[tuple[Any, str], int] = {}  # under _lock
        self._hellos: list[tuple[Any, str, int]] = []  # under _lock
        self._last_ack = 0.0
        self._owed_bytes = 0  # under _lock: what the acknowledgements waiting cover
        self.due = math.inf  # under _lock (read without)
        self._sleeping = False  # under _lock: the receiving thread is (about to be) in poll
        self._woken = False  # under _lock: the pipe was written to since the poll began
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.acks_sent = 0
        self.closed = False  # under _lock: the pipe's descriptors are no longer ours

    def put(self, token: Any, kind: str, src: str, seq: int, nbytes: int = 0) -> None:
        """Queue an answer (any thread); ``nbytes``: what an acknowledgement newly
        covers."""
        with self._lock:
            if kind == "ack":
                timed = bool(self._acks)
                self._acks[(token, src)] = seq
                self._owed_bytes += nbytes
                if self._owed_bytes >= ACK_BYTES:
                    self.due = 0.0
                elif timed:  # the receiving thread's wait ends when they are due
                    return
                else:
                    self.due = min(self.due, self._last_ack + ACK_DELAY_S)
            else:
                self._hellos.append((token, src, seq))
                self.due = 0.0
            # Only a thread asleep in poll is woken: a write to the pipe costs the caller a
            # thread switch (the GIL), and a busy one sends at its next turn.
            if not self._sleeping or self._woken or self.closed:
                return
            self._woken = True
            try:
                os.write(self.wake_w, b"x")
            except OSError:
                pass  # the pipe is full: the receiver is awake anyway

    def sleep_ms(self, longest: int) -> int:
        """How long the receiving thread may sleep in poll; from now on, put() wakes it."""
        with self._lock:
            self._sleeping = True
            if self._hellos or self._owed_bytes >= ACK_BYTES:
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
        """Send the hellos now, and the acknowledgements if ACK_DELAY_S has passed (the
        receiving thread calls it once ``due``; ``force``: all, now)."""
        now = time.monotonic()
        with self._lock:
            hellos, self._hellos = self._hellos, []
            acks: dict[tuple[Any, str], int] = {}
            if self._acks and (force or now - self._last_ack >= ACK_DELAY_S
                               or self._owed_bytes >= ACK_BYTES):
                acks, self._acks = self._acks, {}
                self._last_ack, self._owed_bytes = now, 0
            self.due = self._last_ack + ACK_DELAY_S if self._acks else math.inf
        said = [(token, "hello", src, seq) for token, src, seq in hellos]
        said += [(token, "ack", src, seq) for (token, src), seq in acks.items()]
        for token, kind, src, seq in said:
            try:
                send_frames(socket, self.frames(token, kind, src, seq), NOBLOCK)
                self.acks_sent += kind == "ack"
            except zmq.ZMQError:
                pass  # no sender now: acknowledgements are cumulative, hellos repeat

    def close(self) -> None:
        with self._lock:
            self.closed = True
            for fd in (self.wake_r, self.wake_w):
                os.close(fd)
