"""``arroyo bench``: the highest frame rate a chain sustains with zero loss."""

from __future__ import annotations

import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import click

from arroyo_core.budget import parse_bytes
from arroyo_core.errors import ConfigError

from .bench_chain import BenchChain, BenchError, Frame
from .bench_search import Search
from .bench_step import Step
from .progress import Progress

EXIT_NONE = 1  # no rate was sustained, or the chain could not be measured
EXIT_CONFIG = 2
RESULT = 6  # the table's column of pass/FAIL
POSITIVE = click.FloatRange(min=0, min_open=True)


def _frame(shape: str | None, size: str | None, dtype: str | None) -> Frame | None:
    """The frames asked for on the command line (None: the chain file's)."""
    if shape and size:
        raise click.UsageError("give --shape or --size, not both")
    if not (shape or size or dtype):
        return None
    import numpy as np

    try:
        itemsize = np.dtype(dtype or "uint16").itemsize
    except TypeError:
        raise click.BadParameter(f"{dtype!r} is not a numpy dtype",
                                 param_hint="--dtype") from None
    if size:
        try:
            dims: tuple[int, ...] = (max(1, parse_bytes(size, "--size") // itemsize),)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--size") from None
    else:
        try:
            dims = tuple(int(n) for n in (shape or "512,512").split(","))
        except ValueError:
            raise click.BadParameter(f"{shape!r} is not sizes separated by commas",
                                     param_hint="--shape") from None
    return Frame(dims, dtype or "uint16")


@click.command()
@click.argument("chain_file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--shape", help="Frame shape, comma-separated, e.g. 2048,2048 [default: the chain "
              "file's, or 512,512].")
@click.option("--size", help="Frame size instead of a shape, e.g. 1MiB or 16.8MB (a 1-D frame).")
@click.option("--dtype", help="Frame dtype, e.g. uint8, uint16, float32 [default: the chain "
              "file's, or uint16].")
@click.option("--operator", default="passthrough", show_default=True,
              help="Built-in chain only: the operator of the middle service (a name or "
                   "package.module:Class, found in the current directory).")
@click.option("--pattern", type=click.Choice(["push", "pub"]), default="push",
              show_default=True, help="Built-in chain only: the socket pattern of both hops.")
@click.option("--seconds", default=3.0, show_default=True, type=POSITIVE,
              help="Length of each step's run: longer is more exact, and slower.")
@click.option("--precision", default=0.05, show_default=True, type=POSITIVE,
              help="Stop narrowing down when the lowest failing rate is within this fraction "
                   "above the highest passing one.")
@click.option("--repeats", default=2, show_default=True, type=click.IntRange(min=0),
              help="Runs again of the highest passing rate; every one must pass.")
@click.option("--tolerance", default=0.05, show_default=True,
              type=click.FloatRange(0, 1, max_open=True),
              help="How far below the target the arrival rate may be and still count as "
                   "keeping up (0.05: 5 %).")
@click.option("--start-rate", type=POSITIVE,
              help="First target rate, frames/s [default: about 200 MB/s of frames].")
@click.option("--max-rate", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Never try more frames/s than this (0: no limit).")
@click.option("--json", "json_path", metavar="PATH",
              help="Write every step and the result to PATH as JSON.")
@click.option("--verbose", is_flag=True, help="Echo the services' own log lines.")
def bench(chain_file: str | None, shape: str | None, size: str | None, dtype: str | None,
          operator: str, pattern: str, seconds: float, precision: float, repeats: int,
          tolerance: float, start_rate: float | None, max_rate: float,
          json_path: str | None, verbose: bool) -> None:
    """Find the highest frame rate a chain sustains with zero loss: does it keep up
    with a detector at that rate?

    It runs CHAIN_FILE's services on this machine (its source must be the simulated
    detector), or without CHAIN_FILE the built-in simulated source -> operator -> stats
    sink. Each step is one run of the source at a target rate for --seconds: rates double
    until one fails, bisection narrows down to --precision, and the highest passing rate
    runs --repeats more times.

    \b
    A step passes when every frame the source sent arrived at the end of
    the chain, the ledgers say 0 lost and 0 dropped, and frames arrived at
    the target rate (a push link that cannot keep up slows the source
    instead of losing frames, and a detector cannot wait).

    \b
    Examples:
      arroyo bench --shape 4096,4096 --dtype uint8   # 16.8 MB frames
      arroyo bench my-chain.toml --json bench.json   # your chain file

    \b
    Prints a table (target and achieved frames/s, GB/s, frames lost and
    dropped, CPU of each service in % of one core) and the rate sustained.
    Exit status: 0 a rate was sustained, 1 none was (or the chain failed),
    2 bad arguments.
    """
    frame = _frame(shape, size, dtype)
    try:
        chain = (BenchChain.from_file(chain_file, frame) if chain_file
                 else BenchChain.built_in(frame or Frame((512, 512), "uint16"), operator,
                                          pattern))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    chain.verbose = verbose
    frame = chain.frame
    start = start_rate or min(2000.0, max(10.0, 200e6 / frame.nbytes))
    click.echo(f"arroyo bench: {chain.description}")
    click.echo(f"frames: {'x'.join(map(str, frame.shape))} {frame.dtype} "
               f"({_bytes(frame.nbytes)}); {seconds:g} s per step, precision {precision:.0%}, "
               f"{repeats} repeat(s), tolerance {tolerance:.0%}")
    steps: list[Step] = []
    began = time.monotonic()

    def trial(rate: float) -> bool:
        progress = _Progress(len(steps) + 1, rate)
        try:
            steps.append(chain.step(rate, seconds, tolerance, progress))
        finally:
            progress.close()
        _result_line(len(steps), steps[-1])
        return steps[-1].passed

    search = Search(trial, start, precision, repeats, max_rate)
    failure = None
    try:
        with chain:
            sustained = search.run()
    except (BenchError, RuntimeError) as exc:
        sustained, failure = None, str(exc)
    except KeyboardInterrupt:
        sustained, failure = None, "interrupted"
    report = _report(chain, frame, steps, sustained, failure, time.monotonic() - began,
                     dict(seconds=seconds, precision=precision, repeats=repeats,
                          tolerance=tolerance, start_rate=start, max_rate=max_rate))
    if steps:
        click.echo("\n" + _table(steps, chain.names))
    click.echo(_summary(report))
    if json_path:
        text = json.dumps(report, indent=2, default=str, allow_nan=False)
        Path(json_path).write_text(text + "\n")
        click.echo(f"wrote {json_path}")
    sys.exit(0 if sustained is not None else EXIT_NONE)


class _Progress:
    """A step's frames so far: a bar on a terminal, a line a second in a log
    (services.progress), gone once the step's result line is printed."""

    def __init__(self, number: int, rate: float) -> None:
        self.what = f"step {number:>2}  {rate:>9,.6g} frames/s"
        self.shown: Progress | None = None

    def __call__(self, arrived: int, frames: int, rate: float, lost: int) -> None:
        if self.shown is None:
            self.shown = Progress(self.what, total=frames, unit="frames", transient=True)
            self.shown.__enter__()
        shown = f"{rate:10,.0f} frames/s" if rate else ""
        self.shown.update(arrived, f"{shown}  lost {lost}")

    def close(self) -> None:
        if self.shown is not None:
            self.shown.__exit__(None, None, None)


def _result_line(number: int, step: Step) -> None:
    verdict = "passed" if step.passed else f"FAILED: {step.why}"
    click.echo(f"step {number:>2}  {step.target:>9,.6g} frames/s: {step.achieved:,.0f} "
               f"frames/s arrived, {step.gb_per_s:.3g} GB/s, lost {step.lost}, dropped "
               f"{step.dropped}: {verdict}")


def _table(steps: list[Step], names: list[str]) -> str:
    head = ["STEP", "TARGET/s", "ACHIEVED/s", "GB/s", "LOST", "DROPPED", "RESULT",
            *(f"CPU% {name}" for name in names)]
    rows = [head] + [[str(i), f"{s.target:,.6g}", f"{s.achieved:,.1f}", f"{s.gb_per_s:.3g}",
                      str(s.lost), str(s.dropped), "pass" if s.passed else "FAIL",
                      *(f"{s.cpu[n]:.0f}" if n in s.cpu else "" for n in names)]
                     for i, s in enumerate(steps, 1)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) if i == RESULT else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
                     .rstrip() for row in rows)


def _report(chain: BenchChain, frame: Frame, steps: list[Step], sustained: float | None,
            failure: str | None, seconds: float, settings: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: settings, every step, and the result."""
    kept = [s for s in steps if s.target == sustained]
    failed = [s for s in steps if not s.passed and (sustained is None or s.target > sustained)]
    lowest = min(failed, key=lambda s: s.target, default=None)
    return {
        "version": 1, "chain": chain.description, "services": chain.names,
        "frame": {"shape": list(frame.shape), "dtype": frame.dtype, "bytes": frame.nbytes},
        "settings": settings, "steps": [s.to_dict() for s in steps],
        "sustained": None if sustained is None else {
            "rate": sustained, "runs": len(kept),
            "achieved": statistics.median(s.achieved for s in kept),
            "gb_per_s": statistics.median(s.gb_per_s for s in kept),
            "cpu": {n: statistics.median(s.cpu.get(n, 0.0) for s in kept) for n in chain.names}},
        "lowest_failed": None if lowest is None else {"rate": lowest.target, "why": lowest.why},
        "error": failure, "seconds": round(seconds, 1), "cpus": os.cpu_count(),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _summary(report: dict[str, Any]) -> str:
    lines = []
    if report["error"]:
        lines.append(f"error: {report['error']}")
    kept, failed = report["sustained"], report["lowest_failed"]
    if kept is None:
        lines.append("no rate was sustained with zero loss"
                     + (f": {failed['why']} at {failed['rate']:,.6g} frames/s" if failed else ""))
    else:
        lines.append(f"sustained: {kept['rate']:,.6g} frames/s ({kept['gb_per_s']:.3g} GB/s) "
                     f"with zero loss, in {kept['runs']} of {kept['runs']} runs")
        if failed:
            lines.append(f"first failure: {failed['rate']:,.6g} frames/s ({failed['why']})")
        else:
            lines.append("no rate failed: raise --max-rate to look higher")
    lines.append(f"({len(report['steps'])} steps in {report['seconds']:.0f} s)")
    return "\n".join(lines)


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"
