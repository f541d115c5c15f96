"""What a service's metrics endpoint costs in throughput: one operator hop at 1 KiB events,
metrics off, on (every service with ``--metrics``, the operator's processing time
histogrammed) but not scraped, and on with every endpoint scraped each ``--scrape``
seconds while the run goes, in the same process tree, taking turns, medians of
``--repeats`` runs.

The chain is benchmarks/chain_throughput.py's Arroyo chain (source -> pass-through
operator -> timing sink, three processes on loopback tcp; the rate measured at the sink
from its first to its last event). The goal: metrics on keeps at least 97 % of the rate.

Run ``python benchmarks/metrics_cost.py [--repeats 5] [--scrape 5] [--count 60000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import urllib.request
from typing import Any

import psutil
from chain_throughput import HERE, RUN_TIMEOUT, Child, _free_address, _stop

from services.processes import free_port

SHAPE = (16, 32)  # uint16: 1 KiB


class Scraper(threading.Thread):
    """GETs every endpoint's /metrics each ``every`` seconds until stopped, as Prometheus."""

    def __init__(self, endpoints: list[str], every: float) -> None:
        super().__init__(daemon=True)
        self.endpoints, self.every = endpoints, every
        self.done = threading.Event()
        self.scrapes = 0
        self.failures = 0

    def run(self) -> None:
        while not self.done.wait(self.every):
            for endpoint in self.endpoints:
                try:
                    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=2) as reply:
                        reply.read()
                    self.scrapes += 1
                except OSError:
                    self.failures += 1  # a source that has ended its run


def run(count: int, metrics: bool, scrape: float) -> dict[str, Any]:
    hop1, hop2 = _free_address(), _free_address()
    env = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    service = [sys.executable, "-m", "services"]
    children: list[Child] = []
    endpoints: list[str] = []

    def cpu() -> dict[str, float]:
        times = {}
        for name, child in zip(("sink", "operator", "source"), children, strict=False):
            spent = psutil.Process(child.process.pid).cpu_times()
            times[name] = spent.user + spent.system
        return times

    def start(args: list[str]) -> Child:
        more = ["--log-level", "warning"]
        if metrics:
            endpoints.append(f"127.0.0.1:{free_port()}")
            more += ["--metrics", endpoints[-1]]
        child = Child([*service, *args, *more], env)
        children.append(child)
        child.wait_for("READY", 30)
        return child

    scraper = None
    try:
        sink = start(["publisher", "--name", "sink", "--in", ">" + hop2,
                      "--sink", "chain_throughput:TimingSink"])
        start(["operator", "--name", "operator", "--in", ">" + hop1, "--out", "@" + hop2])
        start(["listener", "--name", "source", "--source", "simulated", "-o",
               f"shape={list(SHAPE)}", "-o", "dtype=uint16", "-o", "runs=2", "-o",
               f"frames={count}", "-o", "rate=0", "--out", "@" + hop1])
        before = cpu()
        if metrics:
            assert len(endpoints) == 3, endpoints
        if scrape:
            scraper = Scraper(endpoints, scrape)
            scraper.start()
        result = json.loads(sink.wait_for("RESULT", RUN_TIMEOUT))
        after = cpu()
        result["cpu_us"] = {name: (after[name] - before[name]) / count * 1e6 for name in after}
        if result["count"] != count:
            raise RuntimeError(f"the sink got {result['count']} of {count} events")
        result["scrapes"] = scraper.scrapes if scraper else 0
        return result
    finally:
        if scraper is not None:
            scraper.done.set()
        _stop(children)


def _runs(rates: list[float]) -> str:
    return ", ".join(f"{rate:,.0f}" for rate in rates)


def unit_costs() -> tuple[float, float]:
    """(CPU ms of one scrape of a service's metrics, us of timing one message), measured
    in this process: what the endpoint adds, whatever the machine's load does to rates."""
    import time

    from prometheus_client import CollectorRegistry, generate_latest

    from arroyo_core.link import OutputLink
    from arroyo_core.operators import PassThrough
    from arroyo_core.runtime import Runtime
    from arroyo_core.sources import SimulatedDetector
    from arroyo_core.timing import Histogram
    from services.metrics import StatusCollector

    runtime = Runtime(SimulatedDetector(frames=5, rate=0), PassThrough(),
                      [OutputLink("@tcp://127.0.0.1:0")])
    runtime.time_operator()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(runtime.status, "operator"))
    scrapes = []
    for _ in range(7):
        began = time.process_time()
        for _ in range(100):
            generate_latest(registry)
        scrapes.append((time.process_time() - began) / 100 * 1e3)
    histogram, clock, timings = Histogram(), time.perf_counter, []
    for _ in range(7):
        began = time.process_time()
        for _ in range(100_000):
            start = clock()
            histogram.observe(clock() - start)
        timings.append((time.process_time() - began) / 100_000 * 1e6)
    runtime.close()
    return statistics.median(scrapes), statistics.median(timings)


MODES = ("off", "on", "scraped")  # metrics off; on, never scraped; on and scraped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--count", type=int, default=60_000, help="1 KiB events per run")
    parser.add_argument("--scrape", type=float, default=5.0,
                        help="seconds between scrapes of each endpoint (the generated "
                             "scrape config's default: 5)")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpus: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    scrapes = []
    for repeat in range(args.repeats):
        order = MODES[repeat % 3:] + MODES[:repeat % 3]  # each mode first in turn
        for mode in order:
            result = run(args.count, mode != "off", args.scrape if mode == "scraped" else 0)
            rates[mode].append(result["msgs_per_s"])
            cpus[mode].append(result["cpu_us"])
            if mode == "scraped":
                scrapes.append(result["scrapes"])
            print(f"repeat {repeat + 1}: {mode:<7} {result['msgs_per_s']:>9,.0f} events/s over "
                  f"{result['seconds']:.2f} s"
                  + (f", {result['scrapes']} scrapes" if mode == "scraped" else "")
                  + "; CPU us/event "
                  + ", ".join(f"{name} {us:.1f}" for name, us in result["cpu_us"].items()),
                  flush=True)
    off = statistics.median(rates["off"])
    print(f"\n1 KiB events, one operator hop, medians of {args.repeats}:")
    for mode in MODES:
        rate = statistics.median(rates[mode])
        what = {"off": "metrics off", "on": "metrics on, not scraped",
                "scraped": f"metrics on, scraped every {args.scrape:g} s"}[mode]
        print(f"  {what:<34} {rate:>9,.0f} events/s  ratio {rate / off:.3f}  (runs "
              f"{_runs(rates[mode])})")
    print(f"  ({statistics.median(scrapes):.0f} scrapes a run; goal: ratio >= 0.97)")
    scrape_ms, timing_us = unit_costs()
    operator_us = statistics.median(run["operator"] for run in cpus["off"])
    print(f"one scrape: {scrape_ms:.2f} ms of CPU ({scrape_ms / args.scrape / 10:.3f} % of a "
          f"core at one every {args.scrape:g} s); timing one message: {timing_us:.2f} us "
          f"({timing_us / operator_us:.1%} of the operator's {operator_us:.1f} us an event "
          f"if every one were timed; a fast operator's are sampled to stay under 1 %)")
    print("CPU per event (us), medians:")
    for name in ("source", "operator", "sink"):
        figures = {mode: statistics.median(run[name] for run in cpus[mode]) for mode in MODES}
        print(f"  {name:<8} " + "  ".join(f"{mode} {us:6.2f}" for mode, us in figures.items())
              + f"  scraped/off {figures['scraped'] / figures['off']:.3f}")


if __name__ == "__main__":
    main()
