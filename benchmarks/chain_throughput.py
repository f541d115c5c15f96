"""Throughput of one operator hop: Arroyo services next to the same chain in bare pyzmq.

Both chains are three processes on loopback tcp, source -> forwarder -> sink:

- Arroyo: ``arroyo listener`` (SimulatedDetector, rate 0, a ring of pre-made frames) ->
  ``arroyo operator`` (pass-through) -> ``arroyo publisher`` with :class:`TimingSink`.
- bare pyzmq: the same shape with PUSH/PULL, ``send_multipart(copy=False)`` of a tiny
  header frame plus the array, ``recv_multipart(copy=False)`` and ``np.frombuffer`` at
  every hop, the source sending from a ring of pre-made arrays (page faults are expensive).

Both use the same high-water marks (Arroyo's default of 100) and the same message count.
The rate is measured at the sink, from the first to the last event it receives, so process
start-up does not count. Arroyo and bare runs alternate, and the table shows medians and the
ratio of the medians, because other work on a shared machine moves absolute figures by
tens of percent from one run to the next.

Run ``python benchmarks/chain_throughput.py [--quick]``. The ``--role`` options are the
bare-pyzmq processes this script starts for itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from arroyo_core.components import Publisher
from arroyo_core.message import Event, Message, Stop

HERE = Path(__file__).resolve().parent
DTYPE = np.dtype("uint16")
HWM = 100  # Arroyo's default for its links; the bare chain uses the same
RING = 4  # pre-made source frames, as SimulatedDetector keeps
RUN_TIMEOUT = 120  # seconds a run may take before the benchmark gives up on it

# name, frame shape (uint16), messages per run (full, quick): a full run lasts 1-4 s, long
# enough that other work on a shared machine moves it less
SIZES = [
    ("1 KiB", (16, 32), 60_000, 10_000),
    ("64 KiB", (128, 256), 20_000, 3_000),
    ("1 MiB", (512, 1024), 4_000, 600),
    ("16 MiB", (2048, 4096), 300, 60),
]


def _result(first: float | None, last: float | None, count: int, nbytes: int) -> dict[str, Any]:
    """The steady rate between the first and the last event the sink saw."""
    seconds = (last - first) if first is not None and last is not None else 0.0
    return {"count": count, "seconds": seconds,
            "msgs_per_s": (count - 1) / seconds if seconds > 0 else 0.0,
            "gb_per_s": (count - 1) * nbytes / seconds / 1e9 if seconds > 0 else 0.0}


class TimingSink(Publisher):
    """Arroyo's sink for this benchmark: times each run's events and prints ``RESULT {json}``
    at its Stop."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.count = 0
        self.nbytes = 0

    def publish(self, message: Message) -> None:
        if isinstance(message, Event):
            self.last = time.perf_counter()
            if self.first is None:
                self.first = self.last
                self.nbytes = sum(a.nbytes for a in message.payload.values())
            self.count += 1
        elif isinstance(message, Stop) and self.count:
            print("RESULT " + json.dumps(_result(self.first, self.last, self.count,
                                                 self.nbytes)), flush=True)
            self.first, self.count = None, 0


# ---------------------------------------------------------------- bare pyzmq processes

def _socket(kind: int, address: str, bind: bool) -> zmq.Socket:
    socket = zmq.Context.instance().socket(kind)
    socket.setsockopt(zmq.SNDHWM if kind == zmq.PUSH else zmq.RCVHWM, HWM)
    socket.linger = 2000
    if bind:
        socket.bind(address)
    else:
        socket.connect(address)
    return socket


END = b"end"


def bare_source(out: str, shape: tuple[int, ...], count: int) -> None:
    push = _socket(zmq.PUSH, out, bind=True)
    rng = np.random.default_rng(0)
    ring = [(rng.random(shape) * 1000).astype(DTYPE) for _ in range(RING)]
    print("READY bare-source", flush=True)
    for index in range(count):
        push.send_multipart([struct.pack("<Q", index), ring[index % RING]], copy=False)
    push.send(END)
    push.close()
    zmq.Context.instance().term()  # pyzmq does not at exit: queued messages would be lost


def bare_forward(inp: str, out: str, shape: tuple[int, ...]) -> None:
    pull = _socket(zmq.PULL, inp, bind=False)
    push = _socket(zmq.PUSH, out, bind=True)
    print("READY bare-forward", flush=True)
    while True:
        frames = pull.recv_multipart(copy=False)
        if len(frames) == 1:
            push.send(END)
            break
        header, frame = frames
        array = np.frombuffer(frame.buffer, DTYPE).reshape(shape)
        push.send_multipart([header, array], copy=False)
    pull.close()
    push.close()
    zmq.Context.instance().term()


def bare_sink(inp: str, shape: tuple[int, ...]) -> None:
    pull = _socket(zmq.PULL, inp, bind=False)
    print("READY bare-sink", flush=True)
    first = last = None
    count = nbytes = 0
    while True:
        frames = pull.recv_multipart(copy=False)
        if len(frames) == 1:
            break
        last = time.perf_counter()
        array = np.frombuffer(frames[1].buffer, DTYPE).reshape(shape)
        if first is None:
            first = last
            nbytes = array.nbytes
        count += 1
    print("RESULT " + json.dumps(_result(first, last, count, nbytes)), flush=True)
    pull.close()


# ---------------------------------------------------------------- running the chains

class Child:
    """A child process whose output lines are collected by a thread, to wait for READY/RESULT."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float, nth: int = 1) -> str:
        """Return what follows ``prefix`` on the ``nth`` line that starts with it."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                seen += 1
                if line.startswith(prefix):
                    nth -= 1
                    if nth == 0:
                        return line[len(prefix):].strip()
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)  # polling output for a condition, with a deadline
        raise RuntimeError(f"no {prefix!r} line; exit code {self.process.poll()}; output:\n"
                           + "\n".join(self.lines[-20:]))



def _stop(children: list[Child]) -> None:
    """SIGTERM all at once (source first), then wait; SIGKILL what is still there after 10 s."""
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.terminate()
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def _free_address() -> str:
    from services.processes import free_port

    return f"tcp://127.0.0.1:{free_port()}"


def run_arroyo(shape: tuple[int, ...], count: int, reliable: bool = False,
               started: Callable[[str, int], None] | None = None,
               warmup_runs: int = 0) -> dict[str, Any]:
    """One measured run of the Arroyo chain (``reliable``: every link reliable, as
    benchmarks/reliable_throughput.py compares); ``started(name, pid)`` is told of each
    service as it starts (benchmarks/thread_cpu.py watches them). ``warmup_runs`` runs go
    through the chain first, unmeasured, as through services that stay up between runs;
    the first run's result is then kept under ``"first_run"``."""
    hop1, hop2 = _free_address(), _free_address()
    env = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    quiet = ["--log-level", "warning"]
    into = ["--in-option", "reliable=true"] if reliable else []
    out = ["--out-option", "reliable=true"] if reliable else []
    children: list[Child] = []

    def start(role: str, name: str, *options: str) -> Child:
        child = Child([sys.executable, "-m", "services", role, "--name", name, *options,
                       *quiet], env)
        children.append(child)
        if started is not None:
            started(name, child.process.pid)
        return child

    try:
        sink = start("publisher", "sink", "--in", ">" + hop2,
                     "--sink", "chain_throughput:TimingSink", *into)
        sink.wait_for("READY", 30)
        start("operator", "operator", "--in", ">" + hop1, "--out", "@" + hop2, *into,
              *out).wait_for("READY", 30)
        # One run more than measured: the source is still sending while the measured run's
        # Stop reaches the sink, so how a source that exits hands over its last messages
        # (a separate matter, see transports/zmq/handoff.py) does not enter the figures.
        start("listener", "source", "--source", "simulated", "-o", f"shape={list(shape)}",
              "-o", "dtype=uint16", "-o", f"runs={warmup_runs + 2}", "-o", f"frames={count}",
              "-o", "rate=0", "--out", "@" + hop1, *out)
        return measured_result(sink, warmup_runs)
    finally:
        _stop(children)


def measured_result(sink: Child, warmup_runs: int) -> dict[str, Any]:
    """The TimingSink's RESULT of the run after ``warmup_runs``, with the first run's under
    ``"first_run"`` if that was not it."""
    result = json.loads(sink.wait_for("RESULT", RUN_TIMEOUT * (warmup_runs + 1),
                                      nth=warmup_runs + 1))
    if warmup_runs:
        result["first_run"] = json.loads(sink.wait_for("RESULT", 0))
    return result


def run_bare(shape: tuple[int, ...], count: int) -> dict[str, Any]:
    hop1, hop2 = _free_address(), _free_address()
    me = [sys.executable, str(Path(__file__).resolve()), "--shape", ",".join(map(str, shape))]
    children = []
    try:
        sink = Child([*me, "--role", "bare-sink", "--in", hop2])
        children.append(sink)
        sink.wait_for("READY", 30)
        forward = Child([*me, "--role", "bare-forward", "--in", hop1, "--out", hop2])
        children.append(forward)
        forward.wait_for("READY", 30)
        source = Child([*me, "--role", "bare-source", "--out", hop1, "--count", str(count)])
        children.append(source)
        return json.loads(sink.wait_for("RESULT", RUN_TIMEOUT))
    finally:
        _stop(children)


def _check(result: dict[str, Any], count: int, which: str) -> None:
    if result["count"] != count:
        raise RuntimeError(f"{which}: the sink got {result['count']} of {count} events")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer messages per run and 3 repeats (a smoke run; quote full runs)")
    parser.add_argument("--repeats", type=int, help="alternating repeats per size [5; quick 3]")
    parser.add_argument("--sizes", help="comma-separated subset, e.g. '1 KiB,1 MiB'")
    parser.add_argument("--role", choices=["bare-source", "bare-forward", "bare-sink"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--in", dest="inp", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role:
        shape = tuple(int(n) for n in args.shape.split(","))
        if args.role == "bare-source":
            bare_source(args.out, shape, args.count)
        elif args.role == "bare-forward":
            bare_forward(args.inp, args.out, shape)
        else:
            bare_sink(args.inp, shape)
        return

    repeats = args.repeats or (3 if args.quick else 5)
    wanted = {s.strip() for s in args.sizes.split(",")} if args.sizes else None
    rows = []
    print(f"one operator hop, 3 processes on loopback tcp, uint16, {repeats} alternating "
          f"repeats, pyzmq {zmq.__version__} / libzmq {zmq.zmq_version()}, "
          f"{os.cpu_count()} cores", flush=True)
    for name, shape, full, quick in SIZES:
        if wanted and name not in wanted:
            continue
        count = quick if args.quick else full
        results: dict[str, list[dict[str, Any]]] = {"arroyo": [], "bare": []}
        for repeat in range(repeats):
            order = ("arroyo", "bare") if repeat % 2 == 0 else ("bare", "arroyo")
            for which in order:
                run = run_arroyo if which == "arroyo" else run_bare
                result = run(shape, count)
                _check(result, count, which)
                results[which].append(result)
            print(f"  {name:>6} #{repeat + 1}: arroyo {results['arroyo'][-1]['msgs_per_s']:9.0f}"
                  f" msg/s   bare {results['bare'][-1]['msgs_per_s']:9.0f} msg/s", flush=True)
        med = {which: (statistics.median(r["msgs_per_s"] for r in rs),
                       statistics.median(r["gb_per_s"] for r in rs))
               for which, rs in results.items()}
        pair_ratios = [a["msgs_per_s"] / b["msgs_per_s"]
                       for a, b in zip(results["arroyo"], results["bare"], strict=True)]
        rows.append((name, count, med["arroyo"], med["bare"],
                     med["arroyo"][0] / med["bare"][0], min(pair_ratios), max(pair_ratios)))

    print()
    print("| payload | msgs/run | Arroyo msg/s | Arroyo GB/s | bare msg/s | bare GB/s "
          "| ratio (medians) | ratio range |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, count, arroyo, bare, ratio, low, high in rows:
        print(f"| {name} | {count} | {arroyo[0]:,.0f} | {arroyo[1]:.3f} | {bare[0]:,.0f} "
              f"| {bare[1]:.3f} | {ratio:.2f} | {low:.2f}-{high:.2f} |")


if __name__ == "__main__":
    main()
