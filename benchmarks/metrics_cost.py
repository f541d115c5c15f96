"""What a service's metrics endpoint costs in throughput: one operator hop at 1 KiB events,
metrics off against metrics on (every service with ``--metrics``, the operator's
processing time histogrammed, and every endpoint scraped each ``--scrape`` seconds while
the run goes), in the same process tree, alternating, medians of ``--repeats`` runs.

The chain is benchmarks/chain_throughput.py's Arroyo chain (source -> pass-through
operator -> timing sink, three processes on loopback tcp; the rate measured at the sink
from its first to its last event). The goal: metrics on keeps at least 97 % of the rate.

Run ``python benchmarks/metrics_cost.py [--repeats 5] [--scrape 1] [--count 60000]``.
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
    more = ["--log-level", "warning", *(["--metrics", "127.0.0.1:0"] if metrics else [])]
    children: list[Child] = []
    endpoints: list[str] = []

    def cpu() -> dict[str, float]:
        times = {}
        for name, child in zip(("sink", "operator", "source"), children, strict=False):
            spent = psutil.Process(child.process.pid).cpu_times()
            times[name] = spent.user + spent.system
        return times

    def start(args: list[str]) -> Child:
        child = Child([*service, *args, *more], env)
        children.append(child)
        ready = child.wait_for("READY", 30)
        endpoints.extend(word.partition("=")[2] for word in ready.split()
                         if word.startswith("metrics="))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--count", type=int, default=60_000, help="1 KiB events per run")
    parser.add_argument("--scrape", type=float, default=1.0,
                        help="seconds between scrapes of each endpoint (Prometheus: 5-15)")
    args = parser.parse_args()
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    scrapes = []
    for repeat in range(args.repeats):
        for metrics in ((False, True) if repeat % 2 == 0 else (True, False)):
            result = run(args.count, metrics, args.scrape)
            rates[metrics].append(result["msgs_per_s"])
            cpus[metrics].append(result["cpu_us"])
            if metrics:
                scrapes.append(result["scrapes"])
            print(f"repeat {repeat + 1}: metrics {'on ' if metrics else 'off'} "
                  f"{result['msgs_per_s']:>9,.0f} events/s over {result['seconds']:.2f} s"
                  + (f", {result['scrapes']} scrapes" if metrics else "") + "; CPU us/event "
                  + ", ".join(f"{name} {us:.1f}" for name, us in result["cpu_us"].items()),
                  flush=True)
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"\n1 KiB events, one operator hop, medians of {args.repeats}:")
    print(f"  metrics off: {off:>9,.0f} events/s  (runs {_runs(rates[False])})")
    print(f"  metrics on:  {on:>9,.0f} events/s  (runs {_runs(rates[True])}; scraped every "
          f"{args.scrape:g} s, {statistics.median(scrapes):.0f} scrapes a run)")
    print(f"  on/off: {on / off:.3f} (goal: >= 0.97)")
    print("CPU per event (us), medians:")
    for name in ("source", "operator", "sink"):
        was = statistics.median(run[name] for run in cpus[False])
        now = statistics.median(run[name] for run in cpus[True])
        print(f"  {name:<8} off {was:6.2f}  on {now:6.2f}  on/off {now / was:.3f}")


if __name__ == "__main__":
    main()
