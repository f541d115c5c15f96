"""Throughput of shm:// links next to Arroyo's own tcp links, in the same run.

Two shapes, each run on ``shm://`` and on loopback ``tcp://`` with nothing else changed:

- one hop, source -> sink (``arroyo listener`` -> ``arroyo publisher``), uint8 frames of
  4096x4096 (16.8 MB) and 2048x2048 (4.2 MB): the issue's goals are >= 230 and >= 960
  frames/s on shm (twice what pvapy 5.6 keeps with zero loss on this kind of machine);
- one operator hop, source -> pass-through operator -> sink, uint16 1 MiB and 16 MiB frames
  (the sizes of benchmarks/chain_throughput.py): the goal is >= 2x tcp on shm.

Every link blocks when full (back-pressure), so the rate is the highest the chain keeps
with zero loss; each run is checked: the sink got every frame the source sent, and its run
ledger says 0 lost. The rate is measured at the sink from its first to its last event
(:class:`chain_throughput.TimingSink`). shm and tcp runs alternate; the table gives medians
and the ratio of the medians (a shared 2-core machine moves absolute figures a lot).

Run ``python benchmarks/shm_throughput.py [--quick] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from chain_throughput import Child, _stop, measured_result

HERE = Path(__file__).resolve().parent
SHM = Path("/dev/shm")

# name, hops (1: source -> sink, 2: with an operator), shape, dtype, frames (full, quick),
# goal (frames/s on shm, or None), goal ratio shm/tcp (or None)
CASES = [
    ("16.8 MB 1 hop", 1, (4096, 4096), "uint8", 1200, 300, 230, None),
    ("4.2 MB 1 hop", 1, (2048, 2048), "uint8", 4000, 1000, 960, None),
    ("1 MiB chain", 2, (512, 1024), "uint16", 6000, 1500, None, 2.0),
    ("16 MiB chain", 2, (2048, 4096), "uint16", 600, 150, None, 2.0),
]


def _address(scheme: str) -> tuple[str, str]:
    from services.processes import free_port

    port = free_port()
    return f"@{scheme}://127.0.0.1:{port}", f">{scheme}://127.0.0.1:{port}"


def run(scheme: str, hops: int, shape: tuple[int, ...], dtype: str, frames: int,
        reliable: bool = False, warmup_runs: int = 0) -> dict[str, Any]:
    """One run of the chain on ``scheme``; the sink's RESULT, checked for zero loss
    (``reliable``: every link reliable, and ``warmup_runs`` runs before the measured one,
    as benchmarks/reliable_throughput.py compares; the first run's result is then kept
    under ``"first_run"``)."""
    env = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    service = [sys.executable, "-m", "services"]
    into = ["--in-option", "reliable=true"] if reliable else []
    out = ["--out-option", "reliable=true"] if reliable else []
    quiet = ["--log-level", "warning"]
    links = [_address(scheme) for _ in range(hops)]
    children = []
    try:
        sink = Child([*service, "publisher", "--name", "sink", "--in", links[-1][1],
                      "--sink", "chain_throughput:TimingSink", *into, *quiet], env)
        children.append(sink)
        sink.wait_for("READY", 30)
        if hops == 2:
            operator = Child([*service, "operator", "--name", "operator", "--in", links[0][1],
                              "--out", links[1][0], *into, *out, *quiet], env)
            children.append(operator)
            operator.wait_for("READY", 30)
        # One run more than measured, as in chain_throughput.py.
        source = Child([*service, "listener", "--name", "source", "--source", "simulated",
                        "-o", f"shape={list(shape)}", "-o", f"dtype={dtype}",
                        "-o", f"runs={warmup_runs + 2}",
                        "-o", f"frames={frames}", "-o", "rate=0", "--out", links[0][0],
                        *out, *quiet], env)
        children.append(source)
        result = measured_result(sink, warmup_runs)
    finally:
        _stop(children)
    if result["count"] != frames:
        raise RuntimeError(f"{scheme}: the sink got {result['count']} of {frames} frames")
    # The loss reports of the runs up to the measured one, logged before its RESULT (the
    # run after it is cut short by the stop).
    ends = [i for i, line in enumerate(sink.lines) if line.startswith("RESULT")]
    lines = sink.lines[:ends[warmup_runs]]
    lost = [line for line in lines if "run_ledger" in line and "frames lost" in line]
    if lost:
        raise RuntimeError(f"{scheme}: the sink reports losses: {lost}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames, 2 repeats")
    parser.add_argument("--repeats", type=int, help="alternating repeats per case [3; quick 2]")
    parser.add_argument("--cases", help="comma-separated subset of the case names")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)
    wanted = {c.strip() for c in args.cases.split(",")} if args.cases else None
    before = set(os.listdir(SHM))
    print(f"shm:// vs tcp:// (loopback), {repeats} alternating repeats, {os.cpu_count()} "
          "cores; zero loss checked on every run", flush=True)
    rows = []
    for name, hops, shape, dtype, full, quick, goal, goal_ratio in CASES:
        if wanted and name not in wanted:
            continue
        frames = quick if args.quick else full
        results: dict[str, list[dict[str, Any]]] = {"shm": [], "tcp": []}
        for repeat in range(repeats):
            for scheme in ("shm", "tcp") if repeat % 2 == 0 else ("tcp", "shm"):
                results[scheme].append(run(scheme, hops, shape, dtype, frames))
            print(f"  {name:>14} #{repeat + 1}: shm {results['shm'][-1]['msgs_per_s']:7.0f}"
                  f" frames/s   tcp {results['tcp'][-1]['msgs_per_s']:7.0f} frames/s",
                  flush=True)
        med = {s: (statistics.median(r["msgs_per_s"] for r in rs),
                   statistics.median(r["gb_per_s"] for r in rs)) for s, rs in results.items()}
        rows.append((name, frames, med, goal, goal_ratio))
    time.sleep(0.5)  # the sink's own close: it unmaps after its last view is gone
    left = sorted(n for n in set(os.listdir(SHM)) - before if n.startswith("arroyo-shm."))

    print()
    print("| case | frames/run | shm frames/s | shm GB/s | tcp frames/s | tcp GB/s "
          "| shm/tcp | goal | met |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for name, frames, med, goal, goal_ratio in rows:
        ratio = med["shm"][0] / med["tcp"][0]
        if goal is not None:
            target, met = f">= {goal} frames/s", med["shm"][0] >= goal
        else:
            target, met = f">= {goal_ratio:.0f}x tcp", ratio >= (goal_ratio or 0)
        print(f"| {name} | {frames} | {med['shm'][0]:,.0f} | {med['shm'][1]:.2f} "
              f"| {med['tcp'][0]:,.0f} | {med['tcp'][1]:.2f} | {ratio:.2f} | {target} "
              f"| {'yes' if met else 'NO'} |")
    print(f"\npools left in {SHM}: {left or 'none'}")


if __name__ == "__main__":
    main()
