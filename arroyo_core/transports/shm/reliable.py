"""A reliable PUSH/PULL link over shared memory (``reliable = true`` on ``shm://``): the
link's window (:mod:`arroyo_core.reliable_link`, the one used on tcp) keeps each message,
and this module keeps its payload in a slot of the sender's pool until the receiver
acknowledges it.

- :meth:`ReliableShmSender.keep` copies a message's payload into a free slot once, when
  the window takes it; the window then holds views on that slot, and the slot is not
  reused until the last of them is gone (the message was acknowledged): a resend after a
  receiver's ``kill -9`` sends the same slot reference again. A buffer that already lies
  in a slot of a pool this process reads (a forwarded array) is kept as it is, holding
  that slot upstream. No free slot is a full window: the link applies its overflow policy.
- The receiver says hello (where it is) on each connection and acknowledges what its
  service finished, as ``A`` control messages (:mod:`.control`, :mod:`.answers`); the
  sender sends only to the receiver that said hello last, as a reliable tcp sender does.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import numpy as np

from ...address import Address
from ...errors import ConfigError
from ...transport import AckedSender, Frames, WaitLog
from ..answers import Answers
from . import control
from .attached import ATTACHED, SlotRef
from .receiver import ShmReceiver
from .receivers import Peer
from .sender import ShmSender
from .sockets import ALIGN

log = logging.getLogger(__name__)


class ReliableShmSender(ShmSender, AckedSender):
    """The sending end of a reliable shm link; options as :class:`.sender.ShmSender`'s
    (``pattern`` must be ``push``; ``max_bytes``, the pool's size, is also the window's
    default byte bound)."""

    send = AckedSender.send  # the link drives it: keep, offer, replies

    def __init__(self, address: Address, link: str, pattern: str = "push",
                 **options: Any) -> None:
        if pattern != "push":
            raise ConfigError(f"{link}: a reliable output is push, not {pattern!r} "
                              "(pub is not reliable yet)")
        super().__init__(address, link, pattern=pattern, **options)
        self.max_bytes = self.pool_bytes
        self.receivers.answers = []
        self.peer: bytes | None = None  # the receiver that said hello last
        self._no_hello = WaitLog()

    def abandon(self) -> None:
        super().abandon()
        self.abandoned = True

    def keep(self, frames: Frames) -> Frames | None:
        with self._lock:
            return self._keep(frames)

    def _keep(self, frames: Frames) -> Frames | None:
        copies: list[tuple[int, Any]] = []
        need = 0
        for index in range(1, len(frames)):
            buffer = frames[index]
            nbytes = memoryview(buffer).nbytes
            if nbytes >= self.inline_bytes and ATTACHED.locate(buffer) is None:
                copies.append((index, buffer))
                need += -(-nbytes // ALIGN) * ALIGN
        if not copies:
            return frames  # small (inline) or forwarded: the window holds them as they are
        if self.pool is None:
            self._make_pool(need)
        pool = self.pool
        assert pool is not None
        if need > pool.slot_bytes:
            self.counts["inline"] += 1
            if self.counts["inline"] == 1:
                log.warning("%s: a message of %d payload bytes does not fit a slot of %d; "
                            "such messages go inline over the socket", self.link, need,
                            pool.slot_bytes)
            return frames
        slot = self._free_slot()
        if slot < 0:  # (what receivers said may free one: read it only then, it costs)
            self._service(0)
            slot = self._free_slot()
        if slot < 0:
            return None  # the pool is full of what the window holds, or receivers hold
        # One view of the slot, whose finalizer frees it once every view made from it
        # (the window's frames) is gone: base collapsing stops at it (its base is the map).
        whole = pool.view(slot, 0, need)
        kept = list(frames)
        offset = 0
        for index, buffer in copies:
            source = np.frombuffer(buffer, np.uint8) if not isinstance(buffer, np.ndarray) \
                else buffer.reshape(-1).view(np.uint8)
            whole[offset:offset + source.nbytes] = source  # the one copy, into shared memory
            kept[index] = whole[offset:offset + source.nbytes]
            offset += -(-source.nbytes // ALIGN) * ALIGN
        self.kept[slot] = True
        weakref.finalize(whole, self._let_go, self.kept, slot)
        self.counts["copied"] += 1
        return kept

    @staticmethod
    def _let_go(kept: np.ndarray, slot: int) -> None:
        kept[slot] = False  # (any thread: the one that dropped the last view)

    def offer(self, frames: Frames, wait: bool) -> bool:
        with self._lock:
            peer = self._room()
            if peer is None:
                self._service(0)  # what receivers said may make room: read it only then
                peer = self._room()
            if peer is None:
                return False
            refs: list[SlotRef | None] = []  # (the carriage, with the header, goes inline)
            forwarded, slot = [], -1
            for buffer in frames[1:]:
                ref = self._locate(buffer)
                refs.append(ref)
                if ref is None:
                    continue
                if self.pool is not None and ref.pool == self.pool.name:
                    slot = ref.slot  # in flight: not reused while a receiver may read it
                else:
                    forwarded.append(buffer)
            assert self.peer is not None
            if self._dispatch(frames, refs, forwarded, [self.peer], slot):
                return True
            self.peer = None  # gone: wait for the next receiver's hello
            return False

    def _room(self) -> Peer | None:
        """The receiver to send to, if it can take a message now."""
        peer = self.peers.get(self.peer) if self.peer is not None else None
        return peer if peer is not None and len(peer.inflight) < self.hwm else None

    def _locate(self, buffer: Any) -> SlotRef | None:
        """Where a buffer the window holds lies: in a slot of our pool, of a pool this
        process reads, or nowhere (it goes inline)."""
        nbytes = memoryview(buffer).nbytes
        if nbytes < self.inline_bytes:
            return None
        pool = self.pool
        if pool is not None and isinstance(buffer, np.ndarray):
            hit = pool.locate(buffer.__array_interface__["data"][0], nbytes)
            if hit is not None:
                return SlotRef(pool.name, hit[0], int(pool.gens[hit[0]]), hit[1], nbytes)
        return ATTACHED.locate(buffer)

    def replies(self, timeout: float, room: bool = False) -> list[tuple[str, str, int]]:
        # (Room comes as control messages too: a receiver done with a message says so.)
        with self._lock:
            answers = self.receivers.answers
            assert answers is not None
            self._service(0 if answers else int(timeout * 1000))
            said, self.receivers.answers = self.receivers.answers, []
        heard = []
        for ident, kind, src, seq in said or ():
            if kind == "hello" and ident in self.peers:
                if self.peer != ident:
                    log.info("%s: receiver pid %d said hello; sending it what it has not "
                             "finished", self.link, self.peers[ident].who.pid)
                self.peer = ident
            heard.append((kind, src, seq))
        if self.peers and self.peer not in self.peers:
            if self._no_hello.due():
                log.info("%s: %d receiver(s) joined, none said a reliable hello for %.0f s "
                         "(is the receiving link reliable too?)", self.link, len(self.peers),
                         self._no_hello.waited)
        else:
            self._no_hello.reset()
        return heard


    def status(self) -> dict[str, Any]:
        return {**super().status(), "reliable": True}


class ReliableShmReceiver(ShmReceiver):
    """The receiving end of a reliable shm link; options as
    :class:`.receiver.ShmReceiver`'s (``pattern`` must be ``pull``)."""

    def __init__(self, address: Address, link: str, pattern: str = "pull",
                 **options: Any) -> None:
        if pattern != "pull":
            raise ConfigError(f"{link}: a reliable input is pull, not {pattern!r} "
                              "(sub is not reliable yet)")
        super().__init__(address, link, pattern=pattern, **options)

    def open(self) -> None:
        self.answers = Answers(lambda token, kind, src, seq: control.answer(kind, src, seq))
        super().open()

    def answer(self, token: Any, kind: str, src: str, seq: int, nbytes: int = 0) -> None:
        assert self.answers is not None, "answer() before open()"
        self.answers.put(token, kind, src, seq, nbytes)

    def status(self) -> dict[str, Any]:
        sent = self.answers.acks_sent if self.answers is not None else 0
        return {**super().status(), "reliable": True, "acks_sent": sent}
