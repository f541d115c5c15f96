"""What reliable mode costs: one operator hop (source -> pass-through -> sink, three
processes on loopback tcp) with every link ``reliable=true`` next to the same chain with
plain links, alternating in one process tree (benchmarks/chain_throughput.py runs both).

Issue 16's goal: reliable >= 0.8x unreliable at 1 KiB and >= 0.95x at 1 MiB and up. The
table gives medians of the sink's steady rate and the ratio of the medians, with the
range of the per-pair ratios: the machine is shared, so absolute figures move. It also
gives the CPU time the three processes used per run (start-up included, the same in both
modes), which a busy machine moves much less than it moves rates.

Each chain first carries one run unmeasured (``--warmup-runs``), as services that stay up
between runs have, so the measured run is not a fresh process's first seconds (spent
faulting in the memory its messages pass through, of which a reliable chain, holding its
windows, has more). The first runs' paired ratios are printed too (docs/reliability.md
section 6 has both).

Run ``python benchmarks/reliable_throughput.py [--quick] [--sizes '1 KiB,1 MiB']
[--scheme shm]``. ``--scheme shm`` runs both hops on ``shm://`` instead
(benchmarks/shm_throughput.py's chain: the window keeps each payload in the sender's slots
until acknowledged), with four times as many messages per run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chain_throughput import SIZES, _check, run_arroyo  # noqa: E402
from shm_throughput import run as run_shm  # noqa: E402

GOALS = {"1 KiB": 0.8, "64 KiB": None, "1 MiB": 0.95, "16 MiB": 0.95}
SHM_LONGER = 4  # shm chains carry 1 MiB and up 3-7 times faster: runs as long in time


def median_interval(values: list[float], resamples: int = 10_000) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval for the median of ``values``: how far the
    machine's run-to-run spread leaves the median of a few pairs uncertain."""
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(values, (resamples, len(values))), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(low), float(high)


def _print_ratios(what: str, pairs: list[float]) -> None:
    low, high = median_interval(pairs)
    print(f"  {what} (reliable / plain, in run order): {', '.join(f'{p:.2f}' for p in pairs)};"
          f" median {statistics.median(pairs):.2f} (95% bootstrap interval {low:.2f}-"
          f"{high:.2f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages, 3 repeats")
    parser.add_argument("--repeats", type=int, help="alternating repeats per size [5; quick 3]")
    parser.add_argument("--sizes", default="1 KiB,1 MiB,16 MiB",
                        help="comma-separated subset of: " + ", ".join(s[0] for s in SIZES))
    parser.add_argument("--scheme", choices=("tcp", "shm"), default="tcp",
                        help="the hops' transport [tcp]")
    parser.add_argument("--warmup-runs", type=int, default=1,
                        help="unmeasured runs through each chain first [1]")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    wanted = {s.strip() for s in args.sizes.split(",")}
    print(f"reliable vs plain {args.scheme} links, one operator hop, {repeats} alternating "
          f"repeats, pyzmq {zmq.__version__} / libzmq {zmq.zmq_version()}, {os.cpu_count()} "
          "cores", flush=True)
    rows = []
    for name, shape, full, quick in SIZES:
        if name not in wanted:
            continue
        count = (quick if args.quick else full) * (SHM_LONGER if args.scheme == "shm" else 1)
        rates: dict[bool, list[float]] = {False: [], True: []}
        gbs: dict[bool, list[float]] = {False: [], True: []}
        cpu: dict[bool, list[float]] = {False: [], True: []}
        first_runs: dict[bool, list[float]] = {False: [], True: []}
        for repeat in range(repeats):
            for reliable in ((False, True) if repeat % 2 == 0 else (True, False)):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                result = (run_arroyo(shape, count, reliable, warmup_runs=args.warmup_runs)
                          if args.scheme == "tcp"
                          else run_shm("shm", 2, shape, "uint16", count, reliable,
                                       args.warmup_runs))
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[reliable].append(after.ru_utime + after.ru_stime - before.ru_utime
                                     - before.ru_stime)
                _check(result, count, "reliable" if reliable else "plain")
                rates[reliable].append(result["msgs_per_s"])
                gbs[reliable].append(result["gb_per_s"])
                if "first_run" in result:
                    _check(result["first_run"], count, "reliable" if reliable else "plain")
                    first_runs[reliable].append(result["first_run"]["msgs_per_s"])
            print(f"  {name:>6} #{repeat + 1}: plain {rates[False][-1]:9.0f} msg/s "
                  f"{cpu[False][-1]:5.1f} CPU s   reliable {rates[True][-1]:9.0f} msg/s "
                  f"{cpu[True][-1]:5.1f} CPU s", flush=True)
        plain, reliable_ = statistics.median(rates[False]), statistics.median(rates[True])
        pairs = [r / p for p, r in zip(rates[False], rates[True], strict=True)]
        _print_ratios(f"{name:>6} paired ratios", pairs)
        if first_runs[True]:
            _print_ratios(f"{name:>6} first runs' (fresh processes') paired ratios",
                          [r / p for p, r in zip(first_runs[False], first_runs[True],
                                                 strict=True)])
        rows.append((name, count, plain, statistics.median(gbs[False]), reliable_,
                     statistics.median(gbs[True]), reliable_ / plain, min(pairs), max(pairs),
                     statistics.median(cpu[False]), statistics.median(cpu[True])))
    print()
    print("| payload | msgs/run | plain msg/s | plain GB/s | reliable msg/s | reliable GB/s "
          "| ratio (medians) | ratio range | goal | CPU s plain / reliable |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, count, plain, plain_gb, rel, rel_gb, ratio, low, high, c0, c1 in rows:
        goal = GOALS.get(name)
        print(f"| {name} | {count} | {plain:,.0f} | {plain_gb:.3f} | {rel:,.0f} | "
              f"{rel_gb:.3f} | {ratio:.2f} | {low:.2f}-{high:.2f} | "
              f"{'>= ' + format(goal, '.2f') if goal else '-'} | {c0:.1f} / {c1:.1f} |")


if __name__ == "__main__":
    main()
