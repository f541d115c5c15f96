"""The pools this process reads from, shared by all of its shm links: a receiving link
takes slots here, and a sending link finds here the slot a forwarded buffer lies in, to
pass it on as a reference instead of copying it.

Every view handed out holds its slot (the seat's hold in the pool, counted per process,
so two views of one slot need both to be gone); a finalizer lowers the hold when the
view and every array made from it are gone, from whichever thread drops the last one.
"""

from __future__ import annotations

import logging
import threading
import weakref
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ...errors import DecodeError
from .pool import DIRECTORY, Pool, PoolError, sweep
from .processes import alive
from .sockets import fence

log = logging.getLogger(__name__)


class SlotRef(NamedTuple):
    """Where a buffer lies: a pool's name, a slot, the slot's generation, the bytes."""

    pool: str
    slot: int
    gen: int
    offset: int
    length: int


class _Attachment:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.counts: dict[int, int] = {}  # slot -> this process's views of it
        self.detached = False


class Attachments:
    """The pools one process has mapped (use the process-wide :data:`ATTACHED`)."""

    def __init__(self, directory: Path = DIRECTORY) -> None:
        self.directory = directory
        self._pools: dict[str, _Attachment] = {}
        self._lock = threading.Lock()

    def take(self, ref: SlotRef) -> np.ndarray:
        """A read-only view of the bytes ``ref`` names, holding its slot until the view
        (and every array made from it) is gone. DecodeError if the pool cannot be mapped,
        ``ref`` does not fit in it, or the slot was reused since ``ref`` was sent."""
        attachment = self._attach(ref.pool)
        pool = attachment.pool
        if not (0 <= ref.slot < pool.slots and 0 <= ref.offset
                and ref.offset + ref.length <= pool.slot_bytes):
            raise DecodeError("slot", f"{ref} lies outside pool {ref.pool} "
                              f"({pool.slots} slots of {pool.slot_bytes} bytes)")
        with self._lock:  # the hold is raised before the generation is read: see pool.py
            count = attachment.counts.get(ref.slot, 0)
            if not count:
                pool.holds[ref.slot, pool.seat] = 1
            attachment.counts[ref.slot] = count + 1
        fence()
        if int(pool.gens[ref.slot]) != ref.gen:
            self._release(attachment, ref.slot)
            raise DecodeError("stale", f"slot {ref.slot} of pool {ref.pool} was reused "
                              f"(generation {int(pool.gens[ref.slot])}, not {ref.gen}) "
                              "before it was read; its message is lost")
        view = pool.view(ref.slot, ref.offset, ref.length)
        view.flags.writeable = False
        weakref.finalize(view, self._release, attachment, ref.slot)
        return view

    def _attach(self, name: str) -> _Attachment:
        attachment = self._pools.get(name)
        if attachment is not None:
            return attachment
        with self._lock:
            attachment = self._pools.get(name)
            if attachment is None:
                try:
                    pool = Pool.attach(name, self.directory)
                except PoolError as exc:
                    raise DecodeError("pool", str(exc)) from None
                attachment = self._pools[name] = _Attachment(pool)
                log.info("mapped pool %s (%d slots of %d bytes, seat %d)", name, pool.slots,
                         pool.slot_bytes, pool.seat)
        return attachment

    def _release(self, attachment: _Attachment, slot: int) -> None:
        with self._lock:
            count = attachment.counts[slot] - 1
            if count:
                attachment.counts[slot] = count
                return
            del attachment.counts[slot]
            attachment.pool.holds[slot, attachment.pool.seat] = 0
            if attachment.detached and not attachment.counts:
                attachment.pool.close()

    def locate(self, buffer: Any) -> SlotRef | None:
        """The slot a buffer (an array or a memoryview, contiguous) lies in, if it lies in
        one of the pools mapped here; this process holds that slot while ``buffer`` lives."""
        if not self._pools:
            return None
        array = buffer if isinstance(buffer, np.ndarray) else np.frombuffer(buffer, np.uint8)
        address = array.__array_interface__["data"][0]
        for name, attachment in list(self._pools.items()):
            hit = attachment.pool.locate(address, array.nbytes)
            if hit is not None:
                slot, offset = hit
                return SlotRef(name, slot, int(attachment.pool.gens[slot]), offset,
                               array.nbytes)
        return None

    def forget_dead_owners(self) -> list[str]:
        """Let go of pools whose owner has died (and remove their files): nothing new
        comes from them; views still held keep reading."""
        with self._lock:
            dead = [name for name, a in self._pools.items() if not alive(a.pool.owner)]
            for name in dead:
                attachment = self._pools.pop(name)
                attachment.detached = True
                if not attachment.counts:
                    attachment.pool.close()
        if dead:
            log.info("the owner of pool(s) %s has ended; unmapping them", ", ".join(dead))
            sweep(self.directory)
        return dead

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {name: {"held": len(a.counts)} for name, a in self._pools.items()}


ATTACHED = Attachments()  # this process's
