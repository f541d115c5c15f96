"""Latency of single events through one operator hop, with batching on and off.

source (SimulatedDetector at a steady rate, 1 KiB frames) -> pass-through operator -> sink,
three services on loopback tcp. The sink notes, for each Event, how long after its
scheduled time it arrived: the source schedules frame ``i`` at ``started + i / rate``
(``started`` is in the run's Start), so this is the whole path's latency, source queue
included. Batching holds an Event back only while the runtime has more queued, so a slow
stream should see no difference; this prints p50 and p99 of both, alternating runs.

Run ``python benchmarks/event_latency.py [--rate 100] [--frames 1000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from arroyo_core.components import Publisher
from arroyo_core.message import Event, Message, Start, Stop

HERE = Path(__file__).resolve().parent
SKIP = 20  # the first frames queue while the chain connects; they are not steady state


class LatencySink(Publisher):
    """Records each Event's delay after its scheduled time; prints ``RESULT {json}``."""

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self.started = 0.0
        self.delays: list[float] = []

    def publish(self, message: Message) -> None:
        if isinstance(message, Start):
            self.started = message.meta["started"]
        elif isinstance(message, Event):
            scheduled = self.started + message.meta["frame"] / self.rate
            self.delays.append(time.time() - scheduled)
        elif isinstance(message, Stop):
            delays = np.array(self.delays[SKIP:]) * 1e3
            print("RESULT " + json.dumps({
                "count": len(self.delays), "p50_ms": float(np.percentile(delays, 50)),
                "p99_ms": float(np.percentile(delays, 99)),
                "max_ms": float(delays.max())}), flush=True)


def run_chain(rate: float, frames: int, batch: bool) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from chain_throughput import Child, _free_address, _stop

    hop1, hop2 = _free_address(), _free_address()
    env = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    service = [sys.executable, "-m", "services"]
    quiet = ["--log-level", "warning"]
    off = [] if batch else ["--out-option", "batch=0"]
    children = []
    try:
        sink = Child([*service, "publisher", "--name", "sink", "--in", ">" + hop2,
                      "--sink", "event_latency:LatencySink", "-o", f"rate={rate}", *quiet], env)
        children.append(sink)
        sink.wait_for("READY", 30)
        operator = Child([*service, "operator", "--name", "operator", "--in", ">" + hop1,
                          "--out", "@" + hop2, *off, *quiet], env)
        children.append(operator)
        operator.wait_for("READY", 30)
        source = Child([*service, "listener", "--name", "source", "--source", "simulated",
                        "-o", "shape=[16,32]", "-o", "dtype=uint16", "-o", f"frames={frames}",
                        "-o", f"rate={rate}", "--out", "@" + hop1, *off, *quiet], env)
        children.append(source)
        return json.loads(sink.wait_for("RESULT", frames / rate + 60))
    finally:
        _stop(children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {"batching on": [], "batching off": []}
    for repeat in range(args.repeats):
        for name in results:
            result = run_chain(args.rate, args.frames, batch=name == "batching on")
            results[name].append(result)
            print(f"#{repeat + 1} {name}: p50 {result['p50_ms']:.2f} ms, "
                  f"p99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.2f} ms", flush=True)
    print(f"\nsingle 1 KiB events at {args.rate:g}/s through one operator hop, "
          f"{args.frames} per run, medians of {args.repeats} runs\n")
    print("| | p50 | p99 |\n|---|---:|---:|")
    for name, runs in results.items():
        print(f"| {name} | {statistics.median(r['p50_ms'] for r in runs):.2f} ms "
              f"| {statistics.median(r['p99_ms'] for r in runs):.2f} ms |")


if __name__ == "__main__":
    main()
