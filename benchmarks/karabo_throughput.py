"""Trains per second from a karabo-bridge: Arroyo's listener next to the native client.

One ``karabo-bridge-server-sim`` (REP, raw zeros; by default one AGIPD module, 16 MiB a
train: 128x512x64 uint16 data and gain) serves every round; the rounds alternate between

- ``client``: ``karabo_bridge.Client(endpoint).next()`` in a loop (the native client:
  REQ, its own deserializer, arrays as numpy views);
- ``listener``: :class:`~arroyo_core.karabo_source.KaraboBridgeListener` delivering to a
  function that counts (receive, decode, Start/Event/Stop, ledgers);
- ``runtime``: the same listener in a real :class:`~arroyo_core.runtime.Runtime` (queue,
  pass-through operator, a sink that counts), as ``arroyo listener`` runs it.

Each round counts trains for ``--seconds`` after its first one; the table gives the
medians of the rounds and each mode's ratio to the client's median. The simulator makes
every train anew (numpy zeros, then msgpack), so it is often what bounds all three: the
ratio says whether Arroyo's listener keeps up with what the native client gets.

Run ``python benchmarks/karabo_throughput.py [--quick] [--detector AGIPD]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import zmq

from arroyo_core.components import Publisher
from arroyo_core.karabo_source import KaraboBridgeListener
from arroyo_core.message import Message
from arroyo_core.operators import PassThrough
from arroyo_core.runtime import Runtime
from services.processes import free_port

MODES = ["client", "listener", "runtime"]


class Clock:
    """Counts trains and times them from the first one on; ``done`` after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.count = 0
        self.nbytes = 0
        self.first = self.last = 0.0
        self.done = threading.Event()

    def tick(self, nbytes: int) -> None:
        now = time.perf_counter()
        if self.count == 0:
            self.first = now
        else:
            self.nbytes += nbytes
        self.count += 1
        self.last = now
        if now - self.first >= self.seconds:
            self.done.set()

    def rate(self) -> tuple[float, float]:
        span = self.last - self.first
        return (self.count - 1) / span, self.nbytes / span / 1e6


def run_client(endpoint: str, seconds: float) -> Clock:
    from karabo_bridge import Client

    clock = Clock(seconds)
    with Client(endpoint, context=zmq.Context()) as client:
        while not clock.done.is_set():
            data, _ = client.next()
            clock.tick(sum(v.nbytes for props in data.values() for v in props.values()
                           if hasattr(v, "nbytes")))
    return clock


class Counting(Publisher):
    def __init__(self, clock: Clock, listener: KaraboBridgeListener) -> None:
        self.clock, self.listener = clock, listener

    def publish(self, message: Message) -> None:
        if message.kind == "event":
            self.clock.tick(message.nbytes)
            if self.clock.done.is_set():
                self.listener.stop()


def run_listener(endpoint: str, seconds: float, in_runtime: bool) -> Clock:
    clock = Clock(seconds)
    listener = KaraboBridgeListener(endpoint, idle_timeout=30)
    sink = Counting(clock, listener)
    if in_runtime:
        runtime = Runtime(listener, PassThrough(), [sink], drain_timeout=5)
        runtime.open()
        runtime.run()
        return clock
    listener.open()
    try:
        listener.start(sink.publish)
    finally:
        listener.close()
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--detector", default="AGIPDModule", choices=["AGIPDModule", "AGIPD"],
                        help="AGIPD: 16 modules, 142 MB a train")
    args = parser.parse_args()
    rounds, seconds = (3, 2.0) if args.quick else (args.rounds, args.seconds)
    sim_script = Path(sys.executable).with_name("karabo-bridge-server-sim")
    sim_path = str(sim_script) if sim_script.exists() else shutil.which("karabo-bridge-server-sim")
    if sim_path is None:
        sys.exit("karabo-bridge-server-sim not found: pip install arroyo-stream[karabo]")
    port = free_port()
    sim = subprocess.Popen([sim_path, "-z", "REP", "-d", args.detector, "-r", "-g", "zeros",
                            str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    endpoint = f"tcp://127.0.0.1:{port}"
    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    try:
        run_client(endpoint, 1.0)  # warm up: the simulator's first trains, page faults
        for index in range(rounds):
            for mode in MODES:
                clock = (run_client(endpoint, seconds) if mode == "client"
                         else run_listener(endpoint, seconds, mode == "runtime"))
                results[mode].append(clock.rate())
                print(f"round {index + 1} {mode:>8}: {clock.rate()[0]:7.1f} trains/s "
                      f"{clock.rate()[1]:8.0f} MB/s", flush=True)
    finally:
        sim.terminate()
        sim.wait(10)
    report(results, args.detector)


def report(results: dict[str, list[tuple[float, float]]], detector: str) -> None:
    medians = {mode: (statistics.median(r[0] for r in rows),
                      statistics.median(r[1] for r in rows)) for mode, rows in results.items()}
    base = medians["client"][0]
    print(f"\nkarabo-bridge-server-sim ({detector}, raw zeros), REQ; medians of "
          f"{len(results['client'])} rounds")
    print("(ratio: of the medians; paired: the median of each round's ratio to the client "
          "round before it, steadier when the machine's load drifts)")
    print(f"{'mode':>10} {'trains/s':>9} {'MB/s':>8} {'ratio':>7} {'paired':>7}")
    for mode, (rate, mbs) in medians.items():
        paired = statistics.median(row[0] / ref[0] for row, ref
                                   in zip(results[mode], results["client"], strict=True))
        print(f"{mode:>10} {rate:9.1f} {mbs:8.0f} {rate / base:6.2f}x {paired:6.2f}x")


if __name__ == "__main__":
    main()

