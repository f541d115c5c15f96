"""Where a chain spends its CPU: each service's threads' CPU time per message over a steady
stretch of the one-hop chain (benchmarks/chain_throughput.py: source -> pass-through ->
sink), plain and reliable links alternating.

On a machine whose cores the chain saturates, its rate follows its CPU per message, and a
whole run's CPU time follows its wall time (docs/reliability.md section 6). Read per
thread, over the same stretch of every run, CPU time says which thread of which service
does more: ``main`` (a service's processing thread: the runtime and its output links),
``other`` (its other Python threads: an input's receiving thread, a source's) and ``io``
(ZeroMQ's I/O thread: the copies through the kernel). From /proc, in clock ticks.
``--switches`` counts each thread's voluntary context switches (its sleeps) per 100
messages instead: how often a thread waits and is woken; ``--faults`` its minor page
faults per message: fresh memory faulted in, about 3.5 us a page here (arroyo_core/memory.py).

Run ``python benchmarks/thread_cpu.py [--pairs 6] [--size '1 MiB'] [--begin 1 --end 3]
[--switches | --faults]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chain_throughput import SIZES, run_arroyo  # noqa: E402

SERVICES = ("source", "operator", "sink")
GROUPS = ("main", "other", "io")
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
# What can be counted per thread: the unit of the count it is reported in (a value per how
# many of the counted), its name, and the digits it is printed with.
MEASURES = {"cpu": (1e6, "CPU us per {} message", 0),
            "switches": (100, "voluntary context switches per 100 {} messages", 0),
            "faults": (1, "minor page faults per {} message", 1)}


def thread_times(pid: int, measure: str = "cpu") -> dict[int, tuple[str, float]]:
    """Each thread of ``pid``: its group and its CPU seconds so far (user and system), or
    its voluntary context switches (``switches``) or minor page faults (``faults``) so far."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text() \
                if measure == "switches" else ""
        except OSError:  # (ended meanwhile)
            continue
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:]
        group = "main" if int(tid) == pid else "io" if name.startswith("ZMQbg/IO") else "other"
        if measure == "switches":
            value = float(status.split("voluntary_ctxt_switches:")[1].split()[0])
        elif measure == "faults":
            value = float(fields.split()[7])
        else:
            user, system = fields.split()[11:13]
            value = (int(user) + int(system)) * TICK_S
        times[int(tid)] = (group, value)
    return times


def measured_run(shape: tuple[int, ...], count: int, reliable: bool, begin: float,
                 end: float, measure: str = "cpu") -> tuple[float, dict[str, dict[str, float]]]:
    """One run: the sink's rate, and per service and thread group the CPU us per message
    (``switches``: voluntary context switches per 100 messages; ``faults``: minor page
    faults per message) between ``begin`` and ``end`` s after the source started."""
    pids: dict[str, int] = {}
    readings: list[dict[str, dict[int, tuple[str, float]]]] = []
    source_started = threading.Event()

    def started(name: str, pid: int) -> None:
        pids[name] = pid
        if name == "source":
            source_started.set()

    def read_twice() -> None:
        source_started.wait()
        began = time.monotonic()
        for at in (begin, end):
            time.sleep(max(0.0, began + at - time.monotonic()))
            readings.append({name: thread_times(pid, measure)
                             for name, pid in pids.items()})

    reader = threading.Thread(target=read_twice, daemon=True)
    reader.start()
    rate = run_arroyo(shape, count, reliable=reliable, started=started)["msgs_per_s"]
    reader.join(timeout=end + 5)
    if len(readings) < 2:
        raise RuntimeError(f"the run ended before {end} s; use a larger --count or --end")
    # the divisor: switches per 100 messages, faults per message, CPU seconds as us each
    units = rate * (end - begin) / MEASURES[measure][0]
    cpu = {name: dict.fromkeys(GROUPS, 0.0) for name in SERVICES}
    for name in SERVICES:
        first, last = readings[0][name], readings[1][name]
        for tid, (group, value) in last.items():
            cpu[name][group] += (value - first.get(tid, (group, 0.0))[1]) / units
    return rate, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=6, help="plain/reliable pairs [6]")
    parser.add_argument("--size", default="1 MiB", help="one of: " + ", ".join(s[0] for s in SIZES))
    parser.add_argument("--count", type=int,
                        help="messages per run [twice the size's full count: the run must "
                        "outlast --end]")
    parser.add_argument("--begin", type=float, default=1.0, help="stretch start, s [1]")
    parser.add_argument("--end", type=float, default=3.0, help="stretch end, s [3]")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--switches", action="store_const", dest="measure", const="switches",
                      help="voluntary context switches per 100 messages instead of CPU")
    what.add_argument("--faults", action="store_const", dest="measure", const="faults",
                      help="minor page faults per message instead of CPU")
    parser.set_defaults(measure="cpu")
    args = parser.parse_args()
    _, unit, digits = MEASURES[args.measure]
    unit = unit.format(args.size)
    _, shape, full, _ = next(s for s in SIZES if s[0] == args.size)
    runs: dict[bool, list[tuple[float, dict[str, dict[str, float]]]]] = {False: [], True: []}
    print(f"{unit}, {args.begin}-{args.end} s into each run")
    for pair in range(args.pairs):
        for reliable in ((False, True) if pair % 2 == 0 else (True, False)):
            rate, cpu = measured_run(shape, args.count or 2 * full, reliable, args.begin, args.end,
                                     args.measure)
            runs[reliable].append((rate, cpu))
            print(f"  {'reliable' if reliable else 'plain   '} {rate:7.0f} msg/s  " + "  ".join(
                f"{name} " + "/".join(f"{cpu[name][g]:.{digits}f}" for g in GROUPS)
                for name in SERVICES), flush=True)
    print(f"\nmedians (main / other / io threads; {unit}):\n")
    print("| service | plain | reliable |\n|---|---:|---:|")
    for name in SERVICES:
        cells = ["/".join(f"{statistics.median(cpu[name][g] for _, cpu in runs[mode]):.{digits}f}"
                          for g in GROUPS) for mode in (False, True)]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    rates = [statistics.median(rate for rate, _ in runs[mode]) for mode in (False, True)]
    print(f"| rate, msg/s | {rates[0]:,.0f} | {rates[1]:,.0f} |")


if __name__ == "__main__":
    main()
