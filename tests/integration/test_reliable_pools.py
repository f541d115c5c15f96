"""A reliable pool (docs/pools.md, docs/reliability.md section 6): the pool chain of
test_pools.py's kill test with ``reliable = true``, under a real supervisord. A worker is
killed while it holds its full credit of frames; the dispatcher gives what it had not
finished to the other workers, and the stage after the pool drops what the dead worker
had passed on already. The receiver at the end (raw pyzmq + msgpack, no Arroyo code)
must get every frame the feeder sent, once."""

from __future__ import annotations

import os
import signal

import pytest

from services.processes import free_port
from tests.integration.test_pools import CREDIT, PoolFeeder, worker_status
from tests.support.chains import pool_chain_toml, write
from tests.support.kills import RawReceiver
from tests.support.ledgers import status
from tests.support.plugins import plugin_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_a_killed_workers_frames_go_to_the_others_and_arrive_once(tmp_path, ipc, supervisor,
                                                                  monkeypatch):
    monkeypatch.setenv("PYTHONPATH", plugin_env()["PYTHONPATH"])  # supervisord passes it on
    hop1, out = free_port(), free_port()
    text, stats = pool_chain_toml(ipc, name="rp", worker_in=f"credit = {CREDIT}", sink="zmq",
                                  operator="arroyo_testplugins.operators:Slow",
                                  operator_options="ms = 8",
                                  sink_options=f'address = "@tcp://127.0.0.1:{out}"',
                                  feed=f"tcp://127.0.0.1:{hop1}")
    receiver = RawReceiver(f"tcp://127.0.0.1:{out}")
    receiver.start()
    feeder = PoolFeeder(f"tcp://127.0.0.1:{hop1}", rate=300.0, reliable=True)
    try:
        sv = supervisor(write(tmp_path / "pool.toml", "reliable = true\n" + text))
        feeder.start()
        wait_for(lambda: receiver.count() > 300, 60, "frames at the receiver")
        old = sv.info("rp:worker-1")["pid"]
        (src,) = worker_status(stats, 1)["input"]["senders"]
        os.kill(old, signal.SIGSTOP)  # held back first, so that it dies holding frames
        wait_for(lambda: feeder.worker(src)["held"] >= CREDIT, 20, "worker-1 to hold frames")
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: sv.info("rp:worker-1")["pid"] not in (0, old), 20, "a new worker-1")
        at_kill = receiver.count()
        wait_for(lambda: receiver.count() > at_kill + 300, 60, "the pool to go on")
        feeder.close()
        wait_for(lambda: receiver.frames_sent, 60, "the run's Stop at the receiver")
        forwarder = status(stats["sink"])
        pool = feeder.link.status().transport["pool"]
    finally:
        feeder.close()
        receiver.stop()
    (sent,) = receiver.frames_sent.values()
    frames = [frame for _run, frame in receiver.frames]
    assert sent == feeder.sent
    assert sorted(frames) == list(range(sent)), (len(frames), len(set(frames)), sent)
    assert pool["gone"] >= 1
    reliable = forwarder["input"]["reliable"]
    print(f"\nreliable pool, a worker killed holding {CREDIT} frames: {sent} sent, every one "
          f"arrived once; after the pool: {reliable}")
