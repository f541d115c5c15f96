"""Frames per second from an areaDetector NTNDArray channel: Arroyo's EPICS listener next
to pvapy's own consumers.

One ``pvapy-ad-sim-server`` publishes as fast as it can (8 cached frames of ``--shape``
uint16, over and over) on private ports, searched on loopback only; the rounds alternate
between

- ``hpc-consumer``: ``pvapy-hpc-consumer`` with its default (pass-through) processor, a
  child process; its own ``processedRate``;
- ``monitor``: a plain pvaccess monitor in this process whose callback counts;
- ``listener``: :class:`~arroyo_core.epics_source.PvaListener` delivering to a function
  that counts (the frame as a numpy view, metadata, Start/Event/Stop, ledgers);
- ``runtime``: the same listener in a real :class:`~arroyo_core.runtime.Runtime` (queue,
  pass-through operator, a sink that counts), as ``arroyo listener`` runs it.

Every round is a process of its own (``--role MODE``, which this script starts), as each
consumer would be. PV Access hands a client that falls behind only the newest frame, so
each client gets what it can take; the rate is frames received per second from the first
one (frames missed are reported too). The table gives medians and each mode's ratio to
``hpc-consumer``.

Run ``python benchmarks/pva_throughput.py [--quick] [--shape 2048 2048]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from arroyo_core.components import Publisher
from arroyo_core.epics_source import PvaListener
from arroyo_core.message import Message
from arroyo_core.operators import PassThrough
from arroyo_core.runtime import Runtime
from services.processes import free_port

MODES = ["hpc-consumer", "monitor", "listener", "runtime"]
CHANNEL = "arroyo:bench:image"


def script(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        sys.exit(f"{name} not found: pip install arroyo-stream[epics]")
    return found


def epics_environment() -> dict[str, str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        udp = probe.getsockname()[1]
    return {"EPICS_PVA_ADDR_LIST": "127.0.0.1", "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
            "EPICS_PVA_SERVER_PORT": str(free_port()), "EPICS_PVA_BROADCAST_PORT": str(udp)}


class Clock:
    """Counts frames by uniqueId from the first one on; ``done`` after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.count = 0
        self.ids = (0, 0)
        self.first = self.last = 0.0
        self.done = threading.Event()

    def tick(self, unique_id: int) -> None:
        now = time.perf_counter()
        if self.count == 0:
            self.first, self.ids = now, (unique_id, unique_id)
        self.count += 1
        self.last, self.ids = now, (self.ids[0], unique_id)
        if now - self.first >= self.seconds:
            self.done.set()

    def rate(self) -> tuple[float, int]:
        """Frames per second, and frames missed (uniqueIds skipped) meanwhile."""
        return ((self.count - 1) / (self.last - self.first),
                self.ids[1] - self.ids[0] + 1 - self.count)


def run_monitor(seconds: float) -> tuple[float, int]:
    import pvaccess as pva

    clock = Clock(seconds)
    channel = pva.Channel(CHANNEL, pva.PVA)

    def update(pv: object) -> None:
        clock.tick(pv["uniqueId"])  # type: ignore[index]

    channel.subscribe("bench", update)
    channel.startMonitor("field()")
    clock.done.wait(seconds + 30)
    channel.stopMonitor()  # (not unsubscribe: pvapy 5.6 then aborts now and then)
    return clock.rate()


class Counting(Publisher):
    def __init__(self, clock: Clock, listener: PvaListener) -> None:
        self.clock, self.listener = clock, listener

    def publish(self, message: Message) -> None:
        if message.kind == "event":
            self.clock.tick(message.meta["uniqueId"])
            if self.clock.done.is_set():
                self.listener.stop()


def run_listener(seconds: float, in_runtime: bool) -> tuple[float, int]:
    clock = Clock(seconds)
    listener = PvaListener(CHANNEL, idle_timeout=30)
    sink = Counting(clock, listener)
    if in_runtime:
        runtime = Runtime(listener, PassThrough(), [sink], drain_timeout=5)
        runtime.open()
        runtime.run()
    else:
        listener.open()
        try:
            listener.start(sink.publish)
        finally:
            listener.close()
    return clock.rate()


def run_hpc_consumer(seconds: float, env: dict[str, str]) -> tuple[float, int]:
    out = subprocess.run([script("pvapy-hpc-consumer"), "-ic", CHANNEL, "-rt", str(seconds),
                          "-rp", str(seconds), "-dc"], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rates = re.findall(r"'processedRate': ([0-9.]+)Hz", out)
    missed = re.findall(r"'nMissed': (\d+)", out)
    if not rates:
        raise RuntimeError(f"pvapy-hpc-consumer printed no processedRate:\n{out[-2000:]}")
    return float(rates[-1]), int(missed[-1]) if missed else -1


def run_child(mode: str, seconds: float, env: dict[str, str], tries: int = 3,
              ) -> tuple[float, int]:
    """One round of ``mode`` in a child process; a round that pvapy 5.6 aborted (now and
    then, in its monitor's callbacks: exit code -6) is said and run again."""
    for _ in range(tries):
        out = subprocess.run([sys.executable, __file__, "--role", mode, "--seconds",
                              str(seconds)], env={**os.environ, **env}, capture_output=True,
                             text=True, timeout=seconds + 60)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if lines:
            result = json.loads(lines[-1])
            return result["rate"], result["missed"]
        if out.returncode != -signal.SIGABRT:
            break
        print(f"  ({mode}: pvapy aborted the round; running it again)", flush=True)
    raise RuntimeError(f"{mode} round failed (exit code {out.returncode}):\n"
                       f"{out.stdout[-1500:]}\n{out.stderr[-1500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=MODES[1:], help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 s")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--shape", type=int, nargs=2, default=[1024, 1024], metavar=("NY", "NX"))
    parser.add_argument("--fps", type=float, default=5000, help="the simulator's target rate")
    args = parser.parse_args()
    if args.role:  # a child: one round of one mode (the environment is the parent's)
        logging.disable(logging.WARNING)  # the runs' loss summaries: the table says it
        rate, missed = (run_monitor(args.seconds) if args.role == "monitor"
                        else run_listener(args.seconds, args.role == "runtime"))
        print(json.dumps({"rate": rate, "missed": missed}), flush=True)
        return
    rounds, seconds = (3, 3.0) if args.quick else (args.rounds, args.seconds)
    env = epics_environment()
    ny, nx = args.shape
    log = tempfile.TemporaryFile()
    sim = subprocess.Popen([script("pvapy-ad-sim-server"), "-cn", CHANNEL, "-nx", str(nx),
                            "-ny", str(ny), "-dt", "uint16", "-fps", str(args.fps),
                            "-rt", "100000", "-std", "1", "-shd", "0", "-dc", "-rp", "0",
                            "-nf", "8", "-cs", "8"], env={**os.environ, **env},
                           stdout=log, stderr=subprocess.STDOUT)
    results: dict[str, list[tuple[float, int]]] = {mode: [] for mode in MODES}
    try:
        run_child("monitor", 1.0, env)  # warm up, and wait for the simulator
        for index in range(rounds):
            for mode in MODES:
                result = (run_hpc_consumer(seconds, env) if mode == "hpc-consumer"
                          else run_child(mode, seconds, env))
                results[mode].append(result)
                print(f"round {index + 1} {mode:>12}: {result[0]:7.1f} frames/s, "
                      f"{result[1]} missed", flush=True)
    except Exception:
        log.seek(0)
        print(f"--- the simulator:\n{log.read()[-2000:].decode(errors='replace')}")
        raise
    finally:
        sim.terminate()
        sim.wait(10)
    nbytes = nx * ny * 2
    medians = {mode: (statistics.median(r[0] for r in rows),
                      statistics.median(r[1] for r in rows)) for mode, rows in results.items()}
    base = medians["hpc-consumer"][0]
    print(f"\npvapy-ad-sim-server {ny}x{nx} uint16 ({nbytes / 1e6:.1f} MB), as fast as it "
          f"publishes; medians of {rounds} rounds of {seconds:g} s")
    print("(ratio: of the medians; paired: the median of each round's ratio to the "
          "hpc-consumer round before it, steadier when the machine's load drifts)")
    print(f"{'mode':>14} {'frames/s':>9} {'MB/s':>8} {'missed':>7} {'ratio':>7} {'paired':>7}")
    for mode, (rate, missed) in medians.items():
        paired = statistics.median(row[0] / ref[0] for row, ref
                                   in zip(results[mode], results["hpc-consumer"], strict=True))
        print(f"{mode:>14} {rate:9.1f} {rate * nbytes / 1e6:8.0f} {missed:7.0f} "
              f"{rate / base:6.2f}x {paired:6.2f}x")


if __name__ == "__main__":
    main()
