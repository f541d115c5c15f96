"""``arroyo demo``: a live chain of three service processes on loopback."""

from __future__ import annotations

import sys
import time

import click

from services.status_server import query_status

from .processes import ServiceProcess, free_port
from .progress import Progress


def _sink_run(stats_endpoint: str) -> dict:
    runs = query_status(stats_endpoint, timeout=1.0).get("outputs", [{}])[0].get("runs", [])
    return runs[-1] if runs else {}


@click.command()
@click.option("--shape", default="512,512", show_default=True, help="Frame shape, comma-separated.")
@click.option("--dtype", default="uint16", show_default=True, help="Frame dtype.")
@click.option("--frames", default=500, show_default=True, help="Frames in the run.")
@click.option("--rate", default=100.0, show_default=True,
              help="Frames per second (0: as fast as possible).")
@click.option("--pattern", type=click.Choice(["push", "pub"]), default="push", show_default=True,
              help="Socket pattern of both hops.")
@click.option("--operator", default="passthrough", show_default=True,
              help="Operator of the middle service (name or package.module:Class).")
@click.option("--verbose", is_flag=True, help="Echo the services' own log lines.")
@click.option("--integrate", is_flag=True,
              help="The beamline chain instead: simulated powder rings -> pyFAI integration "
                   "-> NeXus file (needs the pyfai and nexus extras).")
@click.option("--directory", default="runs", show_default=True,
              help="With --integrate: where the NeXus files go.")
def demo(shape: str, dtype: str, frames: int, rate: float, pattern: str, operator: str,
         verbose: bool, integrate: bool, directory: str) -> None:
    """Run simulated detector -> operator -> statistics sink as three processes and show
    live progress, then a summary of frames sent, received and lost."""
    if integrate:
        from .beamline_demo import beamline_demo

        beamline_demo(shape, frames, rate, directory, verbose)
        return
    host = "127.0.0.1"
    hop1, hop2 = (f"tcp://{host}:{free_port()}" for _ in range(2))
    status = {name: f"tcp://{host}:{free_port()}" for name in ("source", "operator", "sink")}
    in_pattern = {"push": "pull", "pub": "sub"}[pattern]
    shape_option = "shape=[" + shape + "]"
    services = [
        ServiceProcess("publisher", ["--in", ">" + hop2, "--in-pattern", in_pattern,
                                     "--sink", "stats", "-o", "interval=0",
                                     "--status", status["sink"]], "sink", verbose),
        ServiceProcess("operator", ["--in", ">" + hop1, "--in-pattern", in_pattern,
                                    "--out", "@" + hop2, "--out-pattern", pattern,
                                    "--operator", operator, "--status", status["operator"]],
                       "operator", verbose),
    ]
    click.echo(f"chain: source --{pattern} {hop1}--> operator ({operator}) "
               f"--{pattern} {hop2}--> sink")
    try:
        for service in services:
            service.wait_ready()
        source = ServiceProcess("listener", [
            "--source", "simulated", "-o", shape_option, "-o", f"dtype={dtype}",
            "-o", f"frames={frames}", "-o", f"rate={rate}", "--out", "@" + hop1,
            "--out-pattern", pattern, "--status", status["source"]], "source", verbose)
        services.append(source)
        source.wait_ready()
        run = _follow(status["sink"], source, frames)
    finally:
        codes = {service.name: service.stop() for service in services}
    sent = run.get("frames_sent")
    click.echo(f"\nsummary: sent {sent}, received {run.get('frames', 0)}, lost {run.get('lost')}, "
               f"{run.get('frames_per_s', 0):.0f} frames/s, {run.get('mb_per_s', 0):.1f} MB/s "
               f"over {run.get('seconds', 0):.2f} s")
    if any(codes.values()) or not run.get("complete") or run.get("lost"):
        click.echo(f"demo failed: exit codes {codes}", err=True)
        sys.exit(1)


def _follow(sink_status: str, source: ServiceProcess, frames: int) -> dict:
    """Show progress from the sink's ledger until its run completes: a bar on a terminal,
    a line a second otherwise (services.progress)."""
    run: dict = {}
    idle_since = time.monotonic()
    with Progress("demo", total=frames, unit="frames") as progress:
        while True:
            time.sleep(0.5)
            try:
                latest = _sink_run(sink_status)
            except TimeoutError:
                latest = run
            if latest.get("frames") != run.get("frames"):
                idle_since = time.monotonic()
            run = latest or run
            if run:
                progress.update(run["frames"], f"{run['frames_per_s']:8.0f} frames/s  "
                                f"{run['mb_per_s']:8.1f} MB/s  lost {run['lost']}")
            if run.get("complete"):
                return run
            if source.process.poll() not in (None, 0) or time.monotonic() - idle_since > 15:
                progress.echo("no progress for 15 s or the source failed")
                return run
