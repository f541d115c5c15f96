"""A pool of fixed-size slots in one file of ``/dev/shm``, mapped by every process of a link.

::

    header   magic, version, slots, slot bytes, seats, the owner's identity, offsets
    seats    per seat: the (pid, start time) of a process that maps the pool; 0 = free
    gens     per slot: its generation, raised by the owner each time the slot is reused
    holds    per slot and seat: 1 while that seat's process still reads the slot
    data     the slots, each ``slot_bytes`` long, page-aligned

Only the creator (the *owner*, a link's sender) writes ``gens`` and the data, and only
into a slot that no seat holds and that it has no message in flight for. Every other
process that maps the pool takes a *seat* once (under ``flock`` of the file, the only
place two processes could race) and writes only its own seat's column of ``holds``: it
raises its hold *before* it checks that the slot's generation is the one its message
named, and lowers it once its last view of the slot is gone, so a slot is never reused
under a reader, and a reader never takes a reused slot for the one it was sent.

The file is named ``arroyo-shm.PID.START.N`` after its owner, so anyone can tell a pool
whose owner has died, even by ``kill -9``: the owner unlinks its pool when it closes, and
every sender that opens and every receiver that notices a dead owner removes such stale
pools (:func:`sweep`). A seat whose process has died is freed, with its holds, by the owner
(:meth:`Pool.reclaim_dead_seats`). Mappings outlive the unlinking of the file: a reader
keeps reading what it holds.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import mmap
import os
import re
from pathlib import Path

import numpy as np

from .processes import Identity, alive, this_process

log = logging.getLogger(__name__)

DIRECTORY = Path("/dev/shm")
PREFIX = "arroyo-shm."
NAME = re.compile(r"^arroyo-shm\.([0-9]{1,10})\.([0-9]{1,20})\.([0-9]{1,10})$")
MAGIC = 0x4D48535F4F59524F  # b"ORYO_SHM" read as a little-endian int64
VERSION = 1
SEATS = 32  # processes that may map one pool at once (each reader, and each forwarded-to)
MAX_SLOTS = 4096
HEADER_BYTES = 4096
PAGE = mmap.PAGESIZE
# header fields, int64 each
_FIELDS = ("magic", "version", "slots", "slot_bytes", "seats", "owner_pid", "owner_start",
           "seats_at", "gens_at", "holds_at", "data_at")
_counter = itertools.count()


class PoolError(Exception):
    """A pool cannot be created or mapped (missing, foreign or malformed file)."""


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def owner_of(name: str) -> Identity | None:
    """The owner a pool's file name names, None if it is not a pool's name."""
    match = NAME.match(name)
    return Identity(int(match[1]), int(match[2])) if match else None


class Pool:
    """One pool, mapped. Make one with :meth:`create` (the owner) or :meth:`attach`."""

    def __init__(self, path: Path, fd: int, owned: bool) -> None:
        self.path = path
        self.name = path.name
        self.owned = owned
        self.seat = -1  # this process's seat, once attached
        self._fd = fd
        size = os.fstat(fd).st_size
        if size < HEADER_BYTES:
            raise PoolError(f"{path} is not a pool ({size} bytes)")
        self.map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        head = np.ndarray((len(_FIELDS),), np.int64, self.map)
        fields = dict(zip(_FIELDS, (int(v) for v in head), strict=True))
        del head
        if fields["magic"] != MAGIC or fields["version"] != VERSION:
            self.map.close()
            raise PoolError(f"{path} is not a version {VERSION} pool")
        self.slots, self.slot_bytes = fields["slots"], fields["slot_bytes"]
        self.seat_count = fields["seats"]
        self.owner = Identity(fields["owner_pid"], fields["owner_start"])
        if fields["data_at"] + self.slots * self.slot_bytes > size:
            self.map.close()
            raise PoolError(f"{path} is shorter than its header says")
        self.seats = np.ndarray((self.seat_count, 2), np.int64, self.map, fields["seats_at"])
        self.gens = np.ndarray((self.slots,), np.uint64, self.map, fields["gens_at"])
        self.holds = np.ndarray((self.slots, self.seat_count), np.uint8, self.map,
                                fields["holds_at"])
        self.data_at = fields["data_at"]
        self.data = np.ndarray((self.slots * self.slot_bytes,), np.uint8, self.map,
                               self.data_at)
        self.address = self.data.ctypes.data  # where the data region starts in this process

    @classmethod
    def create(cls, slots: int, slot_bytes: int, directory: Path = DIRECTORY) -> Pool:
        """A new pool owned by this process; :func:`sweep` first removes dead owners' ones."""
        slots = max(1, min(int(slots), MAX_SLOTS))
        slot_bytes = _round_up(int(slot_bytes), PAGE)
        me = this_process()
        seats_at = HEADER_BYTES
        gens_at = seats_at + SEATS * 16
        holds_at = gens_at + slots * 8
        data_at = _round_up(holds_at + slots * SEATS, PAGE)
        size = data_at + slots * slot_bytes
        path = directory / f"{PREFIX}{me.pid}.{me.start}.{next(_counter)}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise PoolError(f"cannot create {path}: {exc}") from None
        try:
            os.ftruncate(fd, size)  # sparse: a page takes memory once it is written
            head = np.array([MAGIC, VERSION, slots, slot_bytes, SEATS, me.pid, me.start,
                             seats_at, gens_at, holds_at, data_at], np.int64)
            os.pwrite(fd, head.tobytes(), 0)
            return cls(path, fd, owned=True)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise

    @classmethod
    def attach(cls, name: str, directory: Path = DIRECTORY) -> Pool:
        """Map the pool called ``name`` (as a message names it) and take a seat in it."""
        if owner_of(name) is None:
            raise PoolError(f"{name!r} is not the name of a pool")
        path = directory / name
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise PoolError(f"cannot open pool {name}: {exc.strerror}") from None
        try:
            pool = cls(path, fd, owned=False)
        except BaseException:
            os.close(fd)
            raise
        pool.seat = pool._claim_seat()
        return pool

    def _claim_seat(self) -> int:
        me = this_process()
        with self._locked():
            free = np.flatnonzero(self.seats[:, 0] == 0)
            if len(free):
                seat = int(free[0])
                self.holds[:, seat] = 0
                self.seats[seat] = (me.pid, me.start)
                return seat
        self.close()
        raise PoolError(f"pool {self.name}: all {self.seat_count} seats are taken")

    def _locked(self) -> _Flock:
        return _Flock(self._fd)

    def reclaim_dead_seats(self) -> list[Identity]:
        """Free the seats (and the holds) of processes that have died; the owner calls it."""
        dead = []
        seats = self.seats
        for seat in np.flatnonzero(seats[:, 0]):
            who = Identity(int(seats[seat, 0]), int(seats[seat, 1]))
            if alive(who):
                continue
            with self._locked():
                if seats[seat, 0] != who.pid or seats[seat, 1] != who.start:
                    continue  # taken again meanwhile, by a live process
                self.holds[:, seat] = 0
                seats[seat] = (0, 0)
            dead.append(who)
        return dead

    def held(self) -> np.ndarray:
        """Per slot: whether any seat holds it."""
        return np.asarray(self.holds.any(axis=1))

    def holders(self) -> dict[int, int]:
        """pid -> how many slots it holds."""
        counts = self.holds.sum(axis=0)
        return {int(self.seats[seat, 0]): int(counts[seat]) for seat in np.flatnonzero(counts)}

    def slot(self, index: int) -> np.ndarray:
        """The data of slot ``index`` (a writable view)."""
        begin = index * self.slot_bytes
        return self.data[begin:begin + self.slot_bytes]

    def view(self, index: int, offset: int, length: int) -> np.ndarray:
        """``length`` bytes at ``offset`` in slot ``index``, as a view on the mapping."""
        return np.frombuffer(self.map, np.uint8, length,
                             self.data_at + index * self.slot_bytes + offset)

    def locate(self, address: int, length: int) -> tuple[int, int] | None:
        """(slot, offset) of ``length`` bytes at ``address`` of this process, if they lie
        inside one slot of this pool's mapping, else None."""
        offset = address - self.address
        if offset < 0 or offset + length > self.slots * self.slot_bytes:
            return None
        slot, within = divmod(offset, self.slot_bytes)
        return (slot, within) if within + length <= self.slot_bytes else None

    def unlink(self) -> None:
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the file; the mapping goes with the last view of it (now, if none is left)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for name in ("seats", "gens", "holds", "data"):
            self.__dict__.pop(name, None)
        try:
            self.map.close()
        except BufferError:
            pass  # views still read it: the mapping is released with the last of them


class _Flock:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)


def sweep(directory: Path = DIRECTORY) -> list[str]:
    """Remove the pools of owners that have died (kill -9, a crash); the names removed."""
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        owner = owner_of(name) if name.startswith(PREFIX) else None
        if owner is None or alive(owner):
            continue
        try:
            (directory / name).unlink()
        except FileNotFoundError:
            continue  # removed by another process meanwhile
        except OSError as exc:
            log.warning("cannot remove the stale pool %s: %s", name, exc)
            continue
        removed.append(name)
    if removed:
        log.info("removed %d pool(s) of dead owners from %s: %s", len(removed), directory,
                 ", ".join(removed))
    return removed
