"""Soak: does a chain run for long at 80 % of its `arroyo bench` rate without growing?

Finds the chain's zero-loss rate with `arroyo bench` (or takes --rate), then runs one run
of the simulated source at 80 % of it for --minutes, and prints, for every service, its
resident memory (RSS) and open file descriptors after a warm-up and at the end of the run
(flat: within 5 %, or one file), its CPU, the frames lost and dropped (0) and the
pace (frames/s arrived over the target). Exit status 0 when all is flat and every frame
arrived, else 1 (a run falling behind by more than half is cut short, and fails).

What a service holds at one instant includes the frames in flight through it: up to its
queues' capacity (64 frames each by default), which fill and empty, and which the memory
allocator may or may not give back. So "flat" compares the highest readings (one a
second) of the first and the second half of the run after the warm-up: buffers that fill
reach the same peak in both halves, a leak raises the second.

    python benchmarks/soak.py [CHAIN_FILE] [--minutes 10] [--rate R] [--shape 512,512]
        [--dtype uint16] [--json soak.json]

The chain is a chain file (its source must be the simulated detector) or, without one,
`arroyo bench`'s built-in source -> operator -> stats sink.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.bench_chain import BenchChain, Frame  # noqa: E402

SHARE = 0.8  # of the bench rate
FLAT = 0.05  # how much RSS and open files may change from the warm-up to the end
PACE = 0.05  # frames arriving slower than the target by more than this is said
PACE_LIMIT = 0.5  # and by more than this fails the soak (a run cut short)
FDS_JITTER = 1  # the soak's own status queries hold a connection to a service, or not
WARM_UP_S = 30.0  # from the first frame, at most; a tenth of the run when that is shorter
ENDING_S = 2.0  # the last seconds of a run, as the source closes its sockets, are not read


def bench_rate(args: argparse.Namespace) -> float:
    """The rate `arroyo bench` sustains for this chain (its table is shown as it runs)."""
    with tempfile.TemporaryDirectory() as directory:
        report = Path(directory) / "bench.json"
        command = [sys.executable, "-m", "services", "bench", *chain_args(args),
                   "--json", str(report)]
        print("$ arroyo " + " ".join(command[3:]), flush=True)
        subprocess.run(command, check=False)
        sustained = json.loads(report.read_text())["sustained"]
    if sustained is None:
        sys.exit("soak: arroyo bench found no rate this chain sustains")
    return float(sustained["rate"])


def chain_args(args: argparse.Namespace) -> list[str]:
    given = [args.chain] if args.chain else ["--operator", args.operator,
                                             "--pattern", args.pattern]
    for flag, value in (("--shape", args.shape), ("--dtype", args.dtype)):
        if value:
            given += [flag, value]
    return given


class Watch:
    """RSS and open files of every service, read once a second from the first frame on."""

    def __init__(self, chain: BenchChain, warm_up: float, every: float = 60.0) -> None:
        self.chain = chain
        self.began = 0.0  # the first frame's arrival
        self.warm_up = warm_up
        self.every = every
        self.readings: list[tuple[float, dict[str, tuple[int, int]]]] = []  # (s, name: rss, fds)
        self._said = 0.0

    def __call__(self, arrived: int, frames: int, rate: float, lost: int) -> None:
        now = time.monotonic()
        if not arrived or (self.readings and now - self.began - self.readings[-1][0] < 1.0):
            return
        if not self.began:
            self.began = self._said = now
        reading = {}
        for name in self.chain.names:
            try:
                process = psutil.Process(self.chain.running[name].process.pid)
                reading[name] = (process.memory_info().rss, process.num_fds())
            except (KeyError, psutil.Error):
                continue
        self.readings.append((now - self.began, reading))
        if now - self._said >= self.every:
            self._said = now
            shown = ", ".join(f"{name} {rss / 1e6:.0f} MB {fds} fds"
                              for name, (rss, fds) in reading.items())
            print(f"  {(now - self.began) / 60:5.1f} min: {arrived}/{frames} frames, lost "
                  f"{lost}; {shown}", flush=True)

    def measured(self) -> list[tuple[float, dict[str, tuple[int, int]]]]:
        """The readings from the end of the warm-up to shortly before the run ended (as
        the source closes its sockets)."""
        last = self.readings[-1][0] if self.readings else 0.0
        return [(t, r) for t, r in self.readings if self.warm_up <= t <= last - ENDING_S]

    def series(self) -> list[dict[str, Any]]:
        """A reading every ``every`` seconds, for the JSON."""
        kept, due = [], 0.0
        for t, reading in self.readings:
            if t >= due:
                kept.append({"seconds": round(t, 1), **{name: {"rss": rss, "fds": fds}
                                                         for name, (rss, fds) in reading.items()}})
                due = t + self.every
        return kept


def change(before: int, after: int) -> float:
    return (after - before) / before if before else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chain", nargs="?", help="chain file [default: the built-in chain]")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, help="frames/s to soak at [default: 80 %% of "
                        "what arroyo bench finds]")
    parser.add_argument("--shape", help="frame shape, e.g. 512,512")
    parser.add_argument("--dtype", help="frame dtype, e.g. uint16")
    parser.add_argument("--operator", default="passthrough", help="built-in chain only")
    parser.add_argument("--pattern", default="push", choices=["push", "pub"])
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    if args.rate:
        rate = args.rate
    else:
        rate = float(f"{SHARE * bench_rate(args):.3g}")
        print(f"soak: {SHARE:.0%} of the bench rate: {rate:g} frames/s", flush=True)
    frame = None
    if args.shape or args.dtype:
        frame = Frame(tuple(int(n) for n in (args.shape or "512,512").split(",")),
                      args.dtype or "uint16")
    chain = (BenchChain.from_file(args.chain, frame) if args.chain else
             BenchChain.built_in(frame or Frame((512, 512), "uint16"), args.operator,
                                 args.pattern))
    seconds = args.minutes * 60
    print(f"soak: {chain.description}, {rate:g} frames/s for {args.minutes:g} min", flush=True)
    watch = Watch(chain, min(WARM_UP_S, seconds / 10))
    with chain:
        # a long run that falls a little behind is let finish: its pace is a figure here
        step = chain.step(rate, seconds, tolerance=PACE_LIMIT, progress=watch)
    report = figures(chain, step, watch, rate, args.minutes)
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(0 if report["flat"] and report["passed"] else 1)


def figures(chain: BenchChain, step: Any, watch: Watch, rate: float,
            minutes: float) -> dict[str, Any]:
    """Per service: RSS and open files at the start and the end, and the highest of each in
    the first and in the second half of the run, whose growth says whether it is flat."""
    readings = watch.measured()
    middle = (readings[0][0] + readings[-1][0]) / 2 if readings else 0.0
    services = {}
    for name in chain.names:
        seen = [(t, r[name]) for t, r in readings if name in r]
        halves = [[v for t, v in seen if t < middle], [v for t, v in seen if t >= middle]]
        if not all(halves):
            continue
        (rss0, fds0), (rss1, fds1) = seen[0][1], seen[-1][1]
        peaks = [max(r for r, _ in half) for half in halves]
        files = [max(f for _, f in half) for half in halves]
        services[name] = {
            "rss_start": rss0, "rss_end": rss1, "rss_peaks": peaks,
            "rss_growth": change(*peaks), "fds_start": fds0, "fds_end": fds1,
            "fds_peaks": files, "fds_growth": change(*files), "cpu_percent": step.cpu.get(name)}
    flat = bool(services) and all(
        s["rss_growth"] <= FLAT
        and (s["fds_growth"] <= FLAT or s["fds_peaks"][1] - s["fds_peaks"][0] <= FDS_JITTER)
        for s in services.values())
    return {"chain": chain.description, "rate": rate, "minutes": minutes,
            "warm_up_s": watch.warm_up, "services": services, "flat": flat,
            "passed": step.passed, "why": step.why, "step": step.to_dict(),
            "pace": round(step.achieved / rate, 3), "series": watch.series()}


def table(report: dict[str, Any]) -> str:
    lines = [f"{'SERVICE':10} {'RSS START':>10} {'RSS END':>10} {'PEAK 1ST':>10} "
             f"{'PEAK 2ND':>10} {'GROWTH':>7} {'FDS START':>9} {'FDS END':>8} {'MAX 1ST':>7} "
             f"{'MAX 2ND':>7} {'CPU%':>5}"]
    for name, s in report["services"].items():
        mb = [f"{value / 1e6:>7.1f} MB" for value in (s["rss_start"], s["rss_end"],
                                                       *s["rss_peaks"])]
        lines.append(f"{name:10} {' '.join(mb)} {s['rss_growth']:>+7.1%} {s['fds_start']:>9} "
                     f"{s['fds_end']:>8} {s['fds_peaks'][0]:>7} {s['fds_peaks'][1]:>7} "
                     f"{s['cpu_percent'] or 0:>5.0f}")
    step = report["step"]
    lines.append(f"frames: sent {step['sent']}, arrived {step['arrived']} of {step['frames']}, "
                 f"lost {step['lost']}, dropped {step['dropped']}, "
                 f"{step['achieved']:,.1f} frames/s ({step['gb_per_s']:.3g} GB/s)")
    lines.append(f"memory and open files {'flat' if report['flat'] else 'NOT flat'} (the "
                 f"second half's peak at most {FLAT:.0%} above the first half's, after "
                 f"{report['warm_up_s']:.0f} s of warm-up); "
                 + ("no loss" if report["passed"] else f"FAILED: {report['why']}"))
    if report["pace"] < 1 - PACE:
        lines.append(f"note: frames arrived at {report['pace']:.0%} of the target rate: the "
                     "chain fell behind (a busy machine, or a rate it does not sustain)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
