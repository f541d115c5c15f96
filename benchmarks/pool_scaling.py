"""How a pool of workers scales, and what ordered fan-in costs.

1. Scaling: a simulated source -> a pool of N workers, each an operator that spends
   ``--ms`` milliseconds of CPU per frame (``arroyo_testplugins.operators:Busy``) -> a
   stats sink; N = 1, 2, 4. Prints the rate from the first frame at the sink to the
   run's Stop, the ratio to 1 worker, the rate of the whole run as the sink records it
   (from the source's Start, so it includes the 0.1-0.25 s the workers take to connect:
   ZeroMQ's reconnect timer, as they start before the source binds), and the CPU ms per
   frame of the source, all the workers and the sink (psutil). Each run is followed by
   the same pool on bare pyzmq (``bare_pool.py``), the ceiling on this machine. It has 2
   cores, shared: 4 workers cannot beat 2, and the source and the sink take some CPU too,
   so 2 workers reach at most 2 x (1 worker's CPU per frame) / (everyone's CPU per
   frame) of 1 worker's rate.
2. Fan-in: 1 MiB frames through a pool of 2 pass-through workers into a stats sink whose
   input restores frame order (``order = true``) or not. Prints both rates and the ratio.
3. Two hosts (root only): the pool of 2 busy workers with the
   source, the sink and both workers in one network namespace ("host A"), against the same
   with the second worker in another ("host B", a veth link away): a pool that spans hosts
   should reach the same total.

Every figure is the median of ``--repeats`` runs, each in fresh processes. Rates are from
the first frame at the sink to the run's Stop (section 1 says why).

    python benchmarks/pool_scaling.py [--ms 5] [--frames 600] [--repeats 3]
        [--only scaling|fanin|hosts ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bare_pool import bare_run, group_cpu  # noqa: E402

from services.processes import ServiceProcess, free_port  # noqa: E402
from services.status_server import query_status  # noqa: E402
from tests.support.plugins import plugin_env  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

BUSY = "arroyo_testplugins.operators:Busy"


def one_run(workers: int, frames: int, shape: str, operator: str, options: list[str],
            order: bool, host: str = "127.0.0.1",
            prefixes: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """One run through a pool of ``workers``: ``rate``, frames per second from the first
    frame at the sink to the run's Stop; ``whole``, from the source's Start (as the sink
    records it: it includes the wait for the workers to connect); ``cpu``, CPU ms per frame
    of the source, the workers together and the sink over the first span. The source and
    the sink bind on ``host``, and ``prefixes`` put services (by name) in other network
    namespaces."""
    hop1, hop2 = free_port(), free_port()
    status = f"ipc:///tmp/arroyo-pool-bench-{hop2}.status"
    quiet = ["--log-level", "warning"]
    env = plugin_env()
    started: list[ServiceProcess] = []
    try:
        sink_in = ["--in-option", "order=true"] if order else []
        where = prefixes or {}

        def start(role: str, args: list[str], name: str) -> None:
            started.append(ServiceProcess(role, [*args, *quiet], name=name, env=env,
                                          prefix=where.get(name, [])))

        start("publisher", ["--in", f"@tcp://{host}:{hop2}", "--sink", "stats", "-o",
                            "interval=0", "--status", status, *sink_in], "sink")
        for k in range(workers):
            start("operator", ["--in", f">tcp://{host}:{hop1}", "--in-pattern", "worker",
                               "--out", f">tcp://{host}:{hop2}", "--operator", operator,
                               *options], f"worker-{k}")
        start("listener", ["--source", "simulated", "-o", f"shape={shape}", "-o",
                           f"frames={frames}", "-o", "rate=0", "--out",
                           f"@tcp://{host}:{hop1}", "--out-pattern", "dispatch",
                           "--out-option", f"peers={workers}"], "source")
        watched = {process.name: psutil.Process(process.process.pid) for process in started}
        for process in started:
            process.wait_ready(30)

        def run_record() -> dict[str, Any] | None:
            runs = query_status(status, 5)["outputs"][0]["runs"]
            return runs[0] if runs and runs[0]["frames"] else None

        first = wait_for(run_record, 600, "the first frame", interval=0.005)
        before = cpu_seconds(watched)
        last = dict(before)

        def finished() -> dict[str, Any] | None:
            last.update(cpu_seconds(watched))  # the source exits once its run is over
            run = run_record()
            return run if run and run["complete"] else None

        # Seldom: a status query costs the sink ~0.5 ms of CPU, and this process as much
        # (every 20 ms, 4% of a core the workers would have); the run's end is the sink's
        run = wait_for(finished, 600, "the run to end", interval=0.25)
        assert run["frames"] == frames and run["lost"] == 0, run
    finally:
        for process in reversed(started):
            process.stop()
        Path(status.removeprefix("ipc://")).unlink(missing_ok=True)
    counted = run["frames"] - first["frames"]
    cpu = {name: (last[name] - before[name]) / counted * 1e3 for name in before}
    return {"rate": counted / (run["seconds"] - first["seconds"]),
            "whole": float(run["frames_per_s"]), "cpu": group_cpu(cpu)}


def cpu_seconds(processes: dict[str, psutil.Process]) -> dict[str, float]:
    """User and system CPU seconds of each process still there."""
    seconds = {}
    for name, process in processes.items():
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seconds[name] = times.user + times.system
    return seconds


def two_hosts(args: argparse.Namespace) -> None:
    """Section 3: the same pool on one host and across two."""
    from tests.support.netns import Namespaces, ip

    namespaces = Namespaces()
    try:
        host_a, host_b = namespaces.add("a"), namespaces.add("b")
        namespaces.veth(host_a, "eth0", host_b, "eth0")
        for ns, address in ((host_a, "10.77.0.1"), (host_b, "10.77.0.2")):
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        in_a, in_b = Namespaces.exec_prefix(host_a), Namespaces.exec_prefix(host_b)
        layouts = {"one host": {"worker-1": in_a}, "two hosts": {"worker-1": in_b}}
        print(f"two hosts: 2 workers of {args.ms:g} ms per frame; source, sink and worker 0 on "
              f"host A, worker 1 on host A or B; median of {args.repeats}", flush=True)
        rates: dict[str, list[float]] = {name: [] for name in layouts}
        for _ in range(args.repeats):  # interleaved, as for the fan-in
            for name, layout in layouts.items():
                prefixes = {"source": in_a, "sink": in_a, "worker-0": in_a, **layout}
                rates[name].append(one_run(
                    workers=2, frames=args.frames, shape="[64,64]", operator=BUSY,
                    options=["-o", f"ms={args.ms}"], order=False, host="10.77.0.1",
                    prefixes=prefixes)["rate"])
        for name, got in rates.items():
            print(f"  {name:9}: {statistics.median(got):7.1f} frames/s (runs "
                  f"{', '.join(f'{r:.0f}' for r in got)})", flush=True)
        print(f"  two hosts / one host: {ratio(rates['two hosts'], rates['one host'])}",
              flush=True)
    finally:
        namespaces.remove()


def ratio(ordered: list[float], unordered: list[float]) -> str:
    return f"{statistics.median(ordered) / statistics.median(unordered):.2f}"


def scaling(args: argparse.Namespace) -> None:
    """Section 1: 1, 2 and 4 busy workers, each run followed by the same on bare pyzmq."""
    print(f"scaling: {args.ms:g} ms of CPU per frame, 64x64 uint16 frames, {args.frames} "
          f"frames a run, median of {args.repeats}; rates from the first frame at the sink "
          "to the last (whole: from the source's Start, as the sink records the run, which "
          "includes the wait for the workers to connect); CPU ms per frame of the source, "
          "all workers and the sink", flush=True)
    counts = (1, 2, 4)
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for _ in range(args.repeats):  # interleaved: a change of load hits every figure alike
        for workers in counts:
            runs.setdefault(("arroyo", workers), []).append(one_run(
                workers=workers, frames=args.frames, shape="[64,64]", operator=BUSY,
                options=["-o", f"ms={args.ms}"], order=False))
            runs.setdefault(("bare", workers), []).append(
                bare_run(workers, args.frames, args.ms, free_port(), free_port()))
    for kind in ("arroyo", "bare"):
        base = statistics.median(r["rate"] for r in runs[kind, 1])
        for workers in counts:
            got = runs[kind, workers]
            rate = statistics.median(r["rate"] for r in got)
            cpu = {key: statistics.median(r["cpu"][key] for r in got) for key in got[0]["cpu"]}
            whole = (f", whole {statistics.median(r['whole'] for r in got):.0f}"
                     if kind == "arroyo" else "")
            each = ", ".join(f"{r['rate']:.0f}" for r in got)
            print(f"  {kind:6} {workers} worker(s): {rate:6.1f} frames/s {rate / base:5.2f}x "
                  f"(runs {each}{whole}); CPU "
                  + ", ".join(f"{key} {value:.2f}" for key, value in cpu.items()), flush=True)
    for kind in ("arroyo", "bare"):
        pairs = [two["rate"] / one["rate"]
                 for one, two in zip(runs[kind, 1], runs[kind, 2], strict=True)]
        # CPU per frame hardly moves with the load: 1 worker runs at 1 / (its CPU per
        # frame), 2 workers at most at 2 cores / (everyone's CPU per frame)
        one = statistics.median(r["cpu"]["workers"] for r in runs[kind, 1])
        every = statistics.median(sum(r["cpu"].values()) for r in runs[kind, 2])
        print(f"  {kind} 2 workers / 1, per repeat: {', '.join(f'{r:.2f}' for r in pairs)}; "
              f"median {statistics.median(pairs):.2f}; what 2 cores allow from the CPU per "
              f"frame: 2 x {one:.2f} / {every:.2f} ms = {2 * one / every:.2f}", flush=True)


def fanin(args: argparse.Namespace) -> None:
    """Section 2: ordered against unordered fan-in at 1 MiB."""
    print(f"fan-in: 1 MiB frames (512x1024 uint16), 2 pass-through workers, "
          f"{args.fanin_frames} frames a run, median of {args.repeats}", flush=True)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):  # interleaved, so that a change of load hits both alike
        for order in (False, True):
            rates[order].append(one_run(workers=2, frames=args.fanin_frames,
                                        shape="[512,1024]", operator="passthrough",
                                        options=[], order=order)["rate"])
    for order in (False, True):
        rate = statistics.median(rates[order])
        print(f"  {'ordered' if order else 'unordered':9}: {rate:7.1f} frames/s "
              f"({rate * 2**20 / 1e9:.2f} GB/s; runs "
              f"{', '.join(f'{r:.0f}' for r in rates[order])})", flush=True)
    pairs = [b / a for a, b in zip(rates[False], rates[True], strict=True)]
    each = ", ".join(f"{r:.2f}" for r in pairs)
    print(f"  ordered / unordered: {ratio(rates[True], rates[False])} (per pair of runs: "
          f"{each})", flush=True)


SECTIONS = {"scaling": scaling, "fanin": fanin, "hosts": two_hosts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ms", type=float, default=5.0, help="CPU per frame in each worker")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fanin-frames", type=int, default=1500)
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append",
                        help="run only this section (may be repeated)")
    args = parser.parse_args()
    for name in args.only or list(SECTIONS):
        if name == "hosts" and os.geteuid() != 0:
            print("two hosts: skipped (network namespaces need root)")
            continue
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
