"""``arroyo demo --integrate``: simulated powder rings -> pyFAI integration -> NeXus file,
three service processes on loopback (deploy/beamline.toml is the same chain as a file)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from services.status_server import query_status

from .processes import ServiceProcess, free_port
from .progress import Progress


def beamline_demo(shape: str, frames: int, rate: float, directory: str, verbose: bool) -> None:
    """Run the chain, print the writer's progress, then where the file is and what it holds."""
    host = "127.0.0.1"
    hop1, hop2 = (f"tcp://{host}:{free_port()}" for _ in range(2))
    status = {name: f"tcp://{host}:{free_port()}" for name in ("source", "integrate", "nexus")}
    services = [
        ServiceProcess("publisher", ["--in", ">" + hop2, "--sink", "nexus",
                                     "-o", f"directory={directory}",
                                     "--status", status["nexus"]], "nexus", verbose),
        ServiceProcess("operator", ["--in", ">" + hop1, "--out", "@" + hop2,
                                    "--operator", "integrate", "-o", "bins=500",
                                    "-o", "error_model=poisson", "-o", "keep_frame=true",
                                    "--status", status["integrate"]], "integrate", verbose),
    ]
    click.echo(f"chain: powder source --{hop1}--> integrate (pyFAI) --{hop2}--> nexus "
               f"({directory}/)")
    try:
        for service in services:
            service.wait_ready(timeout=60)  # importing pyFAI takes a few seconds
        source = ServiceProcess("listener", [
            "--source", "powder", "-o", f"shape=[{shape}]", "-o", f"frames={frames}",
            "-o", f"rate={rate}", "--out", "@" + hop1, "--status", status["source"]],
            "source", verbose)
        services.append(source)
        source.wait_ready(timeout=60)
        writer = _follow(status["nexus"], source, frames)
    finally:
        codes = {service.name: service.stop() for service in services}
    path = writer.get("file")
    click.echo(f"\nsummary: {writer.get('rows', 0)} of {frames} frames and their I(q) curves "
               f"in {Path(path).resolve() if path else '(no file)'}")
    if path:
        where = Path(path).resolve()
        click.echo(f"read it: python -c \"import h5py, hdf5plugin; f = h5py.File('{where}'); "
                   "print(f['entry/results/intensity'].shape)\"")
    if any(codes.values()) or writer.get("rows") != frames or writer.get("open", True):
        click.echo(f"demo failed: exit codes {codes}", err=True)
        sys.exit(1)


def _follow(sink_status: str, source: ServiceProcess, frames: int) -> dict:
    """Show the writer's rows until its file holds the run and is closed: a bar on a
    terminal, a line a second otherwise (services.progress)."""
    writer: dict = {}
    idle_since = time.monotonic()
    with Progress("demo", total=frames, unit="frames written") as progress:
        while True:
            time.sleep(0.5)
            try:
                latest = query_status(sink_status, timeout=1.0).get("outputs", [{}])[0]
            except TimeoutError:
                latest = writer
            if latest.get("rows") != writer.get("rows"):
                idle_since = time.monotonic()
            writer = latest or writer
            if writer.get("file"):
                progress.update(writer["rows"], f"{writer['flushed_rows']:>7} flushed")
            if writer.get("files") and not writer.get("open") and writer.get("rows") == frames:
                return writer
            if source.process.poll() not in (None, 0) or time.monotonic() - idle_since > 30:
                progress.echo("no progress for 30 s or the source failed")
                return writer
