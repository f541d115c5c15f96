"""The shm sender: payloads into slots of its pool, headers and slot references to its
receivers over a ROUTER socket, which lets it know which receiver has which message.

A message is *in flight* from its send until each receiver it went to has said it took
it (or has gone: said bye, or died); its slot is reused only once it is not in flight and
no process holds it (:mod:`.pool`). A buffer that already lies in a slot of a pool this
process has mapped (a forwarded array) is not copied: its reference goes on, and the
buffer is kept alive, holding its slot, until the message is no longer in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import zmq

from ...address import Address
from ...budget import parse_bytes
from ...errors import ConfigError
from ...transport import Frames, FrameSender, WaitLog, wait_for_count
from . import control
from .attached import ATTACHED, SlotRef
from .pool import Pool, PoolError, sweep
from .receivers import Receivers
from .sockets import ALIGN, INLINE_BYTES, POLL_MS, fence, open_socket, shown_address

log = logging.getLogger(__name__)

PATTERNS = ("push", "pub")
OVERFLOW = ("block", "drop-newest")
POOL_BYTES = 256 * 2**20  # a pool's size unless max_bytes says
CHECK_S = 0.25  # how often receivers (and the pool's seats) are checked for dead processes
IDLE_S = 0.02  # how often an idle sender reads what its receivers said
HELD_IDLE_S = 1.0  # at close, how long slots may stay held without any being released
SLOT_WAIT_MS = 1  # a freed slot is seen in memory, not told: how often to look


class ShmSender(FrameSender):
    """Sends through shared memory to receivers on this host (see :mod:`.__init__`).

    Parameters
    ----------
    pattern
        ``push``: each message to one receiver, the one with the fewest messages in
        flight; ``pub``: every message to every receiver.
    max_bytes
        The pool's size: ``max_bytes // slot size`` slots, made when the first message
        that needs a slot comes (a service's ``memory_limit`` share, else 256 MiB).
    message_bytes
        The slot size; by default the payload size of the first message that needs one.
        A later, larger message goes inline over the socket (counted as ``inline``).
    hwm
        Messages in flight per receiver (taken off its socket not yet said).
    overflow
        With no free slot or no receiver with room: ``block`` waits (back-pressure);
        ``drop-newest`` drops the event (counted; Start and Stop always wait). A slot a
        receiver holds cannot be taken back: drop-oldest and keep-latest are the
        receiving service's queue policies, whose drops free their slots.
    peers, subscribers
        How many receivers a run waits for before its Start (``peers`` for push,
        ``subscribers`` for pub); 0: do not wait.
    peer_timeout
        Seconds to wait for them before starting anyway (0: forever).
    linger_ms
        How long ``close`` waits for receivers to take every message and release every
        slot before the pool is removed (it stops once none was released for 1 s).
    inline_bytes
        Buffers smaller than this go inline over the socket, not through a slot.
    """

    def __init__(self, address: Address, link: str, pattern: str = "push",
                 max_bytes: Any = None, message_bytes: Any = None, hwm: int = 100,
                 overflow: str = "block", peers: int = 1, subscribers: int = 1,
                 peer_timeout: float = 30.0, linger_ms: int = 10_000,
                 inline_bytes: int = INLINE_BYTES) -> None:
        if pattern not in PATTERNS:
            raise ConfigError(f"output pattern {pattern!r} is not one of {list(PATTERNS)}")
        if overflow not in OVERFLOW:
            raise ConfigError(f"overflow {overflow!r} is not one of {list(OVERFLOW)} on shm:// "
                              "(drop-oldest and keep-latest: the receiving service's "
                              "queue_policy)")
        self.address = address
        self.link = link
        self.pattern = pattern
        self.numbers_drops = pattern == "pub"
        self.pool_bytes = parse_bytes(max_bytes, "max_bytes") if max_bytes else POOL_BYTES
        self.slot_bytes = parse_bytes(message_bytes, "message_bytes") if message_bytes else None
        self.hwm = max(1, int(hwm))
        self.overflow = overflow
        self.expected = int(subscribers if pattern == "pub" else peers)
        self.peer_timeout = float(peer_timeout)
        self.linger_s = int(linger_ms) / 1000
        self.inline_bytes = int(inline_bytes)
        self.socket: zmq.Socket | None = None
        self.pool: Pool | None = None
        self.receivers = Receivers(link)
        self.peers = self.receivers.peers
        self.counts: Counter[str] = Counter()  # copied, forwarded, inline
        # The socket is used from the sending thread and, while it is idle, from a thread
        # that reads what receivers say (so that their "took" lands messages, releasing
        # forwarded slots, without waiting for the next send): never both at once.
        self._lock = threading.Lock()
        self._idle: threading.Thread | None = None
        self._closing = threading.Event()
        self._next_check = 0.0
        self._abandoned = False
        self._wait_log = WaitLog()
        self._closed_pool: dict[str, Any] | None = None

    def open(self) -> None:
        sweep()
        self.socket = open_socket(zmq.ROUTER, self.address, f"{self.pattern} shm output",
                                  {zmq.ROUTER_MANDATORY: 1})
        if self.address.bind:
            self.bound = shown_address(self.socket)
        if self.slot_bytes:
            self._make_pool(self.slot_bytes)
        self._idle = threading.Thread(target=self._serve_idle, daemon=True,
                                      name="arroyo-shm-sender")
        self._idle.start()

    def _serve_idle(self) -> None:
        while not self._closing.wait(IDLE_S):
            with self._lock:
                if self.socket is not None:
                    self._service()

    def _make_pool(self, slot_bytes: int) -> None:
        slots = max(2, self.pool_bytes // slot_bytes)
        try:
            self.pool = Pool.create(slots, slot_bytes)
        except PoolError as exc:
            raise ConfigError(f"{self.link}: {exc}") from None
        self.busy = self.receivers.busy = np.zeros(self.pool.slots, bool)
        self.kept = np.zeros(self.pool.slots, bool)  # held by a reliable link's window
        log.info("%s: pool %s of %d slots of %d bytes", self.link, self.pool.name,
                 self.pool.slots, self.pool.slot_bytes)

    # --- control messages and peers -------------------------------------------------------

    def _service(self, timeout_ms: int = 0) -> None:
        """Read what receivers said (waiting up to ``timeout_ms`` for it); check for dead
        receivers every CHECK_S."""
        socket = self.socket
        assert socket is not None, "send() before open()"
        if socket.poll(timeout_ms, zmq.POLLIN):
            while True:
                try:
                    parts = socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.receivers.heard(parts)
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + CHECK_S
            self.receivers.check()
            if self.pool is not None:
                for who in self.pool.reclaim_dead_seats():
                    log.warning("%s: pid %d died holding slots of pool %s; they are free "
                                "again", self.link, who.pid, self.pool.name)

    # --- sending ---------------------------------------------------------------------------

    def wait_for_peers(self) -> None:
        if self.expected:
            with self._lock:
                wait_for_count(lambda: len(self.peers), self.expected, self.peer_timeout,
                               lambda: self._service(POLL_MS), lambda: self._abandoned,
                               self.link, "receiver(s)")

    def send(self, frames: Frames, droppable: bool) -> str | None:
        with self._lock:
            return self._send(frames, droppable)

    def _send(self, frames: Frames, droppable: bool) -> str | None:
        refs: list[SlotRef | None] = []
        keep: list[Any] = []
        copies: list[tuple[int, Any]] = []  # (index in frames, buffer) to copy into a slot
        need = 0
        for index in range(1, len(frames)):
            buffer = frames[index]
            nbytes = memoryview(buffer).nbytes
            ref = ATTACHED.locate(buffer) if nbytes >= self.inline_bytes else None
            refs.append(ref)
            if ref is not None:
                keep.append(buffer)
            elif nbytes >= self.inline_bytes:
                copies.append((index, buffer))
                need += -(-nbytes // ALIGN) * ALIGN
        if copies and self.pool is None:
            self._make_pool(need)
        if copies and need > self.pool.slot_bytes:  # type: ignore[union-attr]
            self.counts["inline"] += 1
            if self.counts["inline"] == 1:
                log.warning("%s: a message of %d payload bytes does not fit a slot of %d; "
                            "such messages go inline over the socket", self.link, need,
                            self.pool.slot_bytes)  # type: ignore[union-attr]
            copies = []
        while True:  # again only if every receiver it went to had gone meanwhile
            dropped, targets, slot = self._ready(bool(copies), droppable)
            if dropped is not None:
                return dropped
            if copies:
                self._copy(slot, copies, refs, frames)
            if self._dispatch(frames, refs, keep, targets, slot):
                return None

    def _ready(self, needs_slot: bool, droppable: bool) -> tuple[str | None, list[bytes], int]:
        """Wait (or not, by the overflow policy) for receivers with room and a free slot."""
        dropping = droppable and self.overflow == "drop-newest"
        waiting = self._wait_log
        waiting.reset()
        timeout = 0
        while True:
            self._service(timeout)
            if self._abandoned:
                return "no receiver took it before shutdown", [], -1
            targets = self._targets()
            slot = self._free_slot() if targets and needs_slot else -1
            if targets and (slot >= 0 or not needs_slot):
                return None, targets, slot
            why = ("pool full" if targets else
                   "no receiver" if not self.peers else "receivers' queues full")
            if dropping:
                return why, [], -1
            if waiting.due():
                log.info("%s: waiting %.0f s to send: %s (%d receiver(s))", self.link,
                         waiting.waited, why, len(self.peers))
            timeout = SLOT_WAIT_MS if targets else POLL_MS

    def _targets(self) -> list[bytes]:
        peers = self.peers
        if self.pattern == "pub":
            full = any(len(p.inflight) >= self.hwm for p in peers.values())
            return [] if full else list(peers)
        best = min(peers.items(), key=lambda item: len(item[1].inflight), default=None)
        return [best[0]] if best is not None and len(best[1].inflight) < self.hwm else []

    def _free_slot(self) -> int:
        pool, busy = self.pool, self.busy
        assert pool is not None and busy is not None
        free = np.flatnonzero(~busy & ~self.kept & ~pool.held())
        for slot in free:
            pool.gens[slot] += 1  # stale references to it no longer match...
            fence()
            if not pool.holds[slot].any():  # ...and no reader raised a hold meanwhile
                return int(slot)
        return -1

    def _copy(self, slot: int, copies: list[tuple[int, Any]], refs: list[SlotRef | None],
              frames: Frames) -> None:
        pool = self.pool
        assert pool is not None
        data = pool.slot(slot)
        gen = int(pool.gens[slot])
        offset = 0
        for index, buffer in copies:
            source = np.frombuffer(buffer, np.uint8) if not isinstance(buffer, np.ndarray) \
                else buffer.reshape(-1).view(np.uint8)
            data[offset:offset + source.nbytes] = source  # the one copy, into shared memory
            refs[index - 1] = SlotRef(pool.name, slot, gen, offset, source.nbytes)
            offset += -(-source.nbytes // ALIGN) * ALIGN
        self.counts["copied"] += 1

    def _dispatch(self, frames: Frames, refs: list[SlotRef | None], keep: list[Any],
                  targets: list[bytes], slot: int) -> bool:
        """Send to ``targets``; False if every one of them had gone."""
        socket = self.socket
        assert socket is not None
        message_id = self.receivers.new_id()
        parts = [control.message_head(message_id, refs), frames[0],
                 *(frames[i + 1] for i, ref in enumerate(refs) if ref is None)]
        sent = set()
        for ident in targets:
            try:
                socket.send(ident, zmq.SNDMORE)
                socket.send_multipart(parts, copy=False)
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                self.receivers.lost(ident, "receiver disconnected")
                continue
            sent.add(ident)
        if not sent:
            return False
        if keep:
            self.counts["forwarded"] += 1
        self.receivers.sent(message_id, sent, slot if slot >= 0 else None, keep)
        return True

    def abandon(self) -> None:
        self._abandoned = True

    def close(self) -> None:
        if self.socket is None:
            return
        self._closing.set()
        if self._idle is not None:
            self._idle.join()
        # Wait until every message was taken and every slot released: a forwarder holds
        # a slot until its own receiver has mapped the pool, which needs the file. A
        # receiver may keep its last frame until its next message (PUSH gives the Stop to
        # one): once nothing was released for HELD_IDLE_S, what is held is mapped already.
        began = time.monotonic()
        deadline, held, changed = began + self.linger_s, self._held(), began
        while not self._abandoned and time.monotonic() < deadline and self._unreleased():
            self._service(10)
            if self._held() != held:
                held, changed = self._held(), time.monotonic()
            elif not self.receivers.flights and time.monotonic() - changed > HELD_IDLE_S:
                break
        held = self._held()
        if self.receivers.flights:
            log.warning("%s: closing with %d message(s) in flight; what was not taken is "
                        "lost", self.link, len(self.receivers.flights))
        if held:
            log.info("%s: closing with %d slot(s) still held (by pids %s); their mappings "
                     "outlive the pool's file", self.link, held,
                     self.pool.holders() if self.pool is not None else {})
        elif time.monotonic() - began > 0.2:
            log.info("%s: waited %.1f s at close until receivers were done with every slot",
                     self.link, time.monotonic() - began)
        self.receivers.flights.clear()
        self.socket.close(linger=0)
        self.socket = None
        if self.pool is not None:
            self._closed_pool = self._pool_stats()  # what the final ledger shows
            self.pool.unlink()
            self.pool.close()
            self.pool = None

    def _held(self) -> int:
        return 0 if self.pool is None else int(self.pool.held().sum())

    def _unreleased(self) -> bool:
        held = self.pool is not None and bool(self.pool.held().any())
        return bool(self.receivers.flights) or held

    def status(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "pattern": self.pattern, "overflow": self.overflow,
            "peers": {"peers": len(self.peers)}, "in_flight": len(self.receivers.flights),
            "messages": {**self.counts, "lost_in_flight": self.receivers.lost_in_flight},
            "refused": dict(self.receivers.refused)}
        if self.pool is not None:
            stats["pool"] = self._pool_stats()
        elif self._closed_pool is not None:
            stats["pool"] = self._closed_pool
        return stats

    def _pool_stats(self) -> dict[str, Any]:
        pool, busy = self.pool, self.busy
        assert pool is not None and busy is not None
        return {"name": pool.name, "slots": pool.slots, "slot_bytes": pool.slot_bytes,
                "free": int((~busy & ~self.kept & ~pool.held()).sum()),
                "kept": int(self.kept.sum())}
