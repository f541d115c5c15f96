"""The ceiling for a pool on this machine: the same busy loop in N worker processes on bare
pyzmq, as little as a source and a sink can do (used by ``pool_scaling.py``).

A source PUSHes 64x64 uint16 frames (one small header part and the array, as Arroyo sends
them) to N workers, each PULLs, spins ``ms`` milliseconds of its thread's CPU (as
``arroyo_testplugins.operators:Busy`` does) and PUSHes the frame on to one sink. The source
starts once all N workers are connected (PUSH deals only to the peers it has), with small
queues so that a worker that falls behind is skipped (as a pool's credits would). The
sink's rate is from its first frame to its last; each process's CPU seconds are read by
the parent (psutil) over the same span.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import numpy as np
import psutil
import zmq

# Small queues and socket buffers, so that a worker that falls behind (preempted by other
# load) is skipped rather than dealt frames it will hold while the others idle at the end:
# PUSH skips a full queue, and a kernel socket buffer holds hundreds of 8 KiB frames
HWM = 4
BUFFER_BYTES = 32 * 1024


def spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def source(port: int, workers: int, frames: int, done: Any) -> None:
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    small_queues(push)
    monitor = push.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    push.bind(f"tcp://127.0.0.1:{port}")
    for _ in range(workers):  # each worker's connection is ready for messages
        monitor.recv_multipart()
    image = np.ones((64, 64), np.uint16)
    for frame in range(frames):
        push.send_multipart([b"%d" % frame, image])
    done.wait(600)  # alive until its CPU time is read
    push.close(linger=0)
    monitor.close()
    context.term()


def small_queues(socket: zmq.Socket) -> None:
    socket.set_hwm(HWM)
    socket.setsockopt(zmq.SNDBUF, BUFFER_BYTES)
    socket.setsockopt(zmq.RCVBUF, BUFFER_BYTES)


def worker(port_in: int, port_out: int, ms: float) -> None:
    context = zmq.Context()
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    small_queues(pull)
    pull.connect(f"tcp://127.0.0.1:{port_in}")
    push.connect(f"tcp://127.0.0.1:{port_out}")
    while True:  # until the parent ends it
        parts = pull.recv_multipart(copy=False)
        np.frombuffer(parts[1].buffer, np.uint16).reshape(64, 64)
        spin(ms / 1000)
        push.send_multipart(parts, copy=False)


def sink(port: int, frames: int, ready: Any, marks: Any) -> None:
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(f"tcp://127.0.0.1:{port}")
    ready.set()
    pull.recv_multipart(copy=False)
    marks.put(time.monotonic())  # the first frame
    for _ in range(frames - 1):
        pull.recv_multipart(copy=False)
    marks.put(time.monotonic())
    pull.close(linger=0)
    context.term()


def bare_run(workers: int, frames: int, ms: float, port_in: int, port_out: int
             ) -> dict[str, Any]:
    """One run: the sink's rate from its first frame to its last, and CPU ms per frame of
    the source, the workers (together) and the sink over that span."""
    spawn = multiprocessing.get_context("spawn")
    ready, done, marks = spawn.Event(), spawn.Event(), spawn.Queue()
    roles = {"sink": spawn.Process(target=sink, args=(port_out, frames, ready, marks))}
    roles["sink"].start()
    ready.wait(30)
    for k in range(workers):
        roles[f"worker-{k}"] = spawn.Process(target=worker, args=(port_in, port_out, ms))
    roles["source"] = spawn.Process(target=source, args=(port_in, workers, frames, done))
    try:
        for name, process in roles.items():
            if name != "sink":
                process.start()
        watched = {name: psutil.Process(p.pid) for name, p in roles.items()}
        first = marks.get(timeout=600)
        before = {name: cpu_seconds(p) for name, p in watched.items()}
        last = marks.get(timeout=600)
        after = {name: cpu_seconds(p) for name, p in watched.items()}  # a little late: idle
    finally:
        done.set()
        for name, process in roles.items():
            if name.startswith("worker"):
                process.terminate()  # they loop until ended
            process.join(30)
            if process.is_alive():
                process.kill()
    cpu = {name: (after[name] - before[name]) / (frames - 1) * 1e3 for name in watched}
    return {"rate": (frames - 1) / (last - first), "cpu": group_cpu(cpu)}


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU seconds so far."""
    times = process.cpu_times()
    return times.user + times.system


def group_cpu(cpu: dict[str, float]) -> dict[str, float]:
    """CPU ms per frame by service: the source, all workers together, the sink."""
    workers = sum(value for name, value in cpu.items() if name.startswith("worker"))
    return {"source": cpu.get("source", 0.0), "workers": workers, "sink": cpu.get("sink", 0.0)}
