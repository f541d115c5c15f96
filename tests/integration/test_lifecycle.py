"""A service started and stopped many times neither hangs nor leaks: 100 in-process
Runtime cycles with real sockets (and their monitors), and a few real process cycles."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import zmq

from arroyo_core.link import ZmqListener, ZmqPublisher
from arroyo_core.message import Event, Start, Stop
from arroyo_core.operators import PassThrough
from arroyo_core.runtime import Runtime
from arroyo_core.wire import decode, encode
from tests.support.addresses import IpcDirectory

pytestmark = pytest.mark.integration


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def stable_fds() -> int:
    """The descriptor count once it stops moving (the far end of a connection a cycle
    closed is closed by libzmq's I/O thread a moment later)."""
    count = open_fds()
    for _ in range(100):
        time.sleep(0.05)
        count, before = open_fds(), count
        if count == before:
            return count
    raise AssertionError("the number of open descriptors did not settle")


def settle(threads: int, timeout: float = 5.0) -> None:
    """Wait for threads a cycle leaves ending (a cancelled drain timer, a monitor) to end;
    a leaked one never does."""
    deadline = time.monotonic() + timeout
    while threading.active_count() > threads:
        if time.monotonic() > deadline:
            raise AssertionError(f"threads left running: {threading.enumerate()}")
        time.sleep(0.02)


def one_cycle(ipc: IpcDirectory, feeder: zmq.Socket, drain: zmq.Socket, cycle: int) -> None:
    """Open a runtime, pass a run through it, stop it, and check it ended and closed."""
    listener = ZmqListener(">" + ipc("in"))
    publisher = ZmqPublisher(">" + ipc("out"), linger_ms=2000)
    runtime = Runtime(listener, PassThrough(), [publisher], drain_timeout=5.0)
    runtime.open()
    thread = threading.Thread(target=runtime.run, name=f"cycle-{cycle}")
    thread.start()
    run = f"cycle-{cycle}"
    messages = [Start({"run": run}), Event({"run": run, "frame": 0}, {"x": b"abc"}),
                Stop({"run": run, "frames_sent": 1})]
    for seq, message in enumerate(messages):
        feeder.send_multipart(encode(message, src=f"feeder-{cycle}", seq=seq))
    kinds = []
    for _ in messages:
        assert drain.poll(5000), f"cycle {cycle}: nothing came out of the runtime"
        kinds.append(decode(drain.recv_multipart())[0].kind)
    assert kinds == ["start", "event", "stop"]
    runtime.stop()
    thread.join(10)
    assert not thread.is_alive(), f"cycle {cycle}: run() did not return after stop()"
    assert runtime.stats()["input"]["received"] == 3


@pytest.mark.slow
def test_hundred_runtime_cycles_leave_no_descriptors_or_threads(ipc, zmq_socket):
    # The test's sockets bind once; each cycle's sockets connect, so between cycles nothing
    # of the test's is reconnecting (which would hold descriptors for a moment).
    feeder = zmq_socket(zmq.PUSH)
    feeder.bind(ipc("in"))
    drain = zmq_socket(zmq.PULL)
    drain.bind(ipc("out"))
    threads = threading.active_count()
    for cycle in range(5):  # warm-up: lazily created context threads and caches
        one_cycle(ipc, feeder, drain, cycle)
    settle(threads)
    fds = stable_fds()
    began = time.monotonic()
    for cycle in range(5, 100):
        one_cycle(ipc, feeder, drain, cycle)
    took = time.monotonic() - began
    settle(threads)
    assert stable_fds() == fds, (fds, open_fds())
    print(f"\n95 open/run/stop cycles in {took:.1f} s; open descriptors {fds} -> {open_fds()}, "
          f"threads {threads} -> {threading.active_count()}")


def test_service_process_cycles_stop_cleanly(service, ipc):
    fds = None
    for cycle in range(6):
        process = service("publisher", "--in", ">" + ipc(), "--sink", "stats",
                          "--status", ipc(), name=f"cycle{cycle}")
        process.signal(signal.SIGTERM)
        assert process.process.wait(10) == 0, process.output()
        assert "stopped; ledger" in process.output()
        process.output()  # joins its output reader
        if cycle == 0:
            fds = open_fds()
    assert open_fds() == fds
