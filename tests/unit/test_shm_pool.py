"""A shm pool's rules with real files and mappings, in one process (no sockets): what a
reader holds is never handed out again, a reused slot is refused by generation, buffers
are found in the slot they lie in, and dead owners' pools are swept."""

from __future__ import annotations

import numpy as np
import pytest

from arroyo_core.errors import DecodeError
from arroyo_core.transports.shm.attached import Attachments, SlotRef
from arroyo_core.transports.shm.pool import Pool, PoolError, sweep
from arroyo_core.transports.shm.processes import this_process


@pytest.fixture
def pool(tmp_path):
    made = Pool.create(3, 5000, directory=tmp_path)  # slot size rounds up to a page
    yield made
    made.unlink()
    made.close()


def publish(pool: Pool, slot: int, value: int) -> SlotRef:
    """What the sender does: a new generation, then the bytes."""
    pool.gens[slot] += 1
    pool.slot(slot)[:100] = value
    return SlotRef(pool.name, slot, int(pool.gens[slot]), 0, 100)


def test_a_held_slot_stays_held_until_its_last_view_is_gone(pool, tmp_path):
    reader = Attachments(tmp_path)
    ref = publish(pool, 1, 7)
    view = reader.take(ref)
    again = reader.take(ref)  # two views of one slot in one process
    assert view[0] == 7 and not view.flags.writeable
    assert pool.held().tolist() == [False, True, False]
    derived = np.asarray(view).reshape(10, 10)
    del view, again
    assert pool.held()[1], "an array made from the view still reads the slot"
    del derived
    assert not pool.held().any()


def test_a_reused_slot_is_refused_not_read(pool, tmp_path):
    reader = Attachments(tmp_path)
    old = publish(pool, 0, 1)
    publish(pool, 0, 2)  # reused before the old reference was read
    with pytest.raises(DecodeError) as refused:
        reader.take(old)
    assert refused.value.reason == "stale"
    assert not pool.held().any(), "a refused reference leaves no hold behind"


@pytest.mark.parametrize("ref", [SlotRef("x", 0, 1, 0, 1), SlotRef("arroyo-shm.1.2.3", 0, 1, 0, 1)])
def test_references_to_no_pool_are_decode_errors(tmp_path, ref):
    with pytest.raises(DecodeError) as error:
        Attachments(tmp_path).take(ref)
    assert error.value.reason == "pool"


def test_references_outside_the_pool_are_decode_errors(pool, tmp_path):
    reader = Attachments(tmp_path)
    for ref in (SlotRef(pool.name, 3, 0, 0, 1), SlotRef(pool.name, 0, 0, 8000, 1000)):
        with pytest.raises(DecodeError) as error:
            reader.take(ref)
        assert error.value.reason == "slot"


def test_a_forwarded_buffer_is_found_in_its_slot(pool, tmp_path):
    reader = Attachments(tmp_path)
    ref = publish(pool, 2, 3)
    view = reader.take(ref)
    assert reader.locate(view[10:60]) == SlotRef(pool.name, 2, ref.gen, 10, 50)
    assert reader.locate(memoryview(view)) == ref
    assert reader.locate(np.zeros(100, np.uint8)) is None


def test_seats_are_taken_once_per_mapping_and_dead_ones_freed(pool, tmp_path):
    reader = Pool.attach(pool.name, tmp_path)
    me = this_process()
    assert pool.seats[reader.seat].tolist() == [me.pid, me.start]
    pool.seats[5] = (me.pid, me.start + 1)  # a process that has ended
    pool.holds[:, 5] = 1
    dead = pool.reclaim_dead_seats()
    assert [who.pid for who in dead] == [me.pid] and not pool.holds[:, 5].any()
    assert pool.seats[reader.seat].tolist() == [me.pid, me.start], "a live seat stays"
    reader.close()


def test_sweep_removes_only_the_pools_of_dead_owners(pool, tmp_path):
    me = this_process()
    dead = tmp_path / f"arroyo-shm.{me.pid}.{me.start + 1}.0"  # our pid, another start
    dead.write_bytes(b"")
    other = tmp_path / "arroyo-shm.notes"
    other.write_bytes(b"")
    assert sweep(tmp_path) == [dead.name]
    assert pool.path.exists() and other.exists() and not dead.exists()


def test_a_file_that_is_no_pool_is_refused(tmp_path):
    (tmp_path / "arroyo-shm.1.2.3").write_bytes(b"\0" * 8192)
    with pytest.raises(PoolError):
        Pool.attach("arroyo-shm.1.2.3", tmp_path)
