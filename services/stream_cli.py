"""``arroyo tap``, ``arroyo record`` and ``arroyo replay``: commands that attach to a
running chain's links (:mod:`services.tap`, :mod:`services.record_replay`)."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import click

from arroyo_core.errors import ConfigError

from .serve import EXIT_CONFIG
from .service_options import parse_pairs

_OPTION = click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
                       help="An option of the link's transport (e.g. topic=frames, hwm=1000, "
                            "curve_server_key_file=...). Repeatable.")
_PATTERN = click.option("--pattern", metavar="PATTERN",
                        help="How to receive, for transports with a choice [default: sub on "
                             "ZeroMQ, to attach to a PUB link; pull to be a PUSH link's peer].")


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so a command ends its loop and closes its file."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


def _refuse(exc: ConfigError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_CONFIG)


@click.command()
@click.argument("address", metavar="ADDRESS")
@click.option("--status", "is_status", is_flag=True,
              help="ADDRESS is a service's status socket: print its links' rates each second.")
@_PATTERN
@_OPTION
@click.option("--headers", default=3, show_default=True,
              help="Event headers to print per second at most (every Start and Stop is).")
@click.option("-c", "--count", type=int, help="Exit after this many messages.")
@click.option("--seconds", type=float, help="Exit after this many seconds.")
@click.option("--interval", default=1.0, show_default=True,
              help="Seconds between rate lines (and status readings).")
def tap(address: str, is_status: bool, pattern: str | None, options: tuple[str, ...],
        headers: int, count: int | None, seconds: float | None, interval: float) -> None:
    """Attach to the running link at ADDRESS without disturbing it (like tcpdump) and print
    headers, message and byte rates and sizes, and what its own ledger saw missing. On a PUB
    link (e.g. >tcp://host:5555) it subscribes as a tap, which the link neither counts nor
    waits for; with --status, ADDRESS is a service's status socket."""
    import time

    from .tap import TapSummary, open_receiver, received, tap_status

    stop = _stop_on_signals()
    ends = time.monotonic() + seconds if seconds else None
    if is_status:
        tap_status(address, interval, lambda: stop.is_set() or (
            ends is not None and time.monotonic() > ends), click.echo)
        return
    try:
        receiver, name = open_receiver(address, pattern, parse_pairs(options, "-o/--option"),
                                       True, "tap")
    except ConfigError as exc:
        _refuse(exc)
    if ends is not None:
        threading.Timer(seconds or 0, stop.set).start()
    click.echo(f"tapping {name}", err=True)
    summary = TapSummary(name, headers)
    try:
        for frames in received(receiver, stop):
            for line in summary.observe(frames):
                click.echo(line)
            rate = summary.rate_line(every=interval)
            if rate:
                click.echo(rate)
            if count and summary.messages >= count:
                break
        click.echo(summary.rate_line(force=True))
    finally:
        stop.set()
        receiver.close()


@click.command()
@click.argument("address", metavar="ADDRESS")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@_PATTERN
@_OPTION
@click.option("--tap", "as_tap", is_flag=True,
              help="Attach to a PUB link as a tap, which it does not wait for (so the "
                   "recording may start mid-run), instead of as one of its subscribers.")
@click.option("--runs", type=int, help="Stop after this many runs have ended (their Stop).")
@click.option("-c", "--count", type=int, help="Stop after this many messages.")
@click.option("--seconds", type=float, help="Stop after this many seconds.")
def record(address: str, path: str, pattern: str | None, options: tuple[str, ...],
           as_tap: bool, runs: int | None, count: int | None, seconds: float | None) -> None:
    """Record the stream at ADDRESS into FILE: each message's wire frames as they came, and
    when. On a PUB link it is one of the link's subscribers (give the link subscribers=N
    counting it, so a run waits for it), or a tap with --tap; '@ADDRESS' binds instead
    (a PULL for a PUSH link to connect to, with --pattern pull). Ends on Ctrl-C, or as
    --runs, --count or --seconds say. `arroyo replay FILE ADDRESS` sends it again."""
    from .record_replay import record as record_stream

    stop = _stop_on_signals()
    try:
        done = record_stream(address, path, pattern, parse_pairs(options, "-o/--option"),
                             as_tap, runs, count, seconds, stop,
                             lambda line: click.echo(line))
    except ConfigError as exc:
        _refuse(exc)
    missing = f", {done.missing} missing (sequence gaps)" if done.missing else ""
    click.echo(f"recorded {done.messages:,} messages ({done.events:,} events, {done.runs} "
               f"run(s) ended), {done.bytes / 1e6:,.1f} MB in {done.seconds:.1f} s to "
               f"{path}{missing}")


@click.command()
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@click.argument("address", metavar="ADDRESS")
@_OPTION
@click.option("--pattern", metavar="PATTERN",
              help="How to send, for transports with a choice: push (the default on "
                   "ZeroMQ) or pub.")
@click.option("--speed", default=1.0, show_default=True,
              help="A multiple of the recorded pace (2: twice as fast); 0: as fast as the "
                   "receivers take it.")
@click.option("--fast", is_flag=True, help="As fast as the receivers take it (--speed 0).")
def replay(path: str, address: str, options: tuple[str, ...], pattern: str | None,
           speed: float, fast: bool) -> None:
    """Send the recording FILE to ADDRESS ('@tcp://*:5555' binds, as a service's output,
    the default; '>tcp://host:5555' connects), every message's frames unchanged: the
    receivers see the recorded sender ids, sequence numbers, runs and payload bytes.
    Before each run's Start it waits for a peer (or the link's subscribers=N)."""
    from .record_replay import replay as replay_stream
    from .serve import _flush_sockets

    if speed < 0:
        _refuse(ConfigError(f"--speed must be 0 or more, got {speed:g}"))
    try:
        done = replay_stream(path, address, pattern, parse_pairs(options, "-o/--option"),
                             0.0 if fast else speed, lambda line: click.echo(line))
    except ConfigError as exc:
        _refuse(exc)
    _flush_sockets(10.0)  # what is still queued leaves before the process ends
    click.echo(f"replayed {done.messages:,} messages, {done.bytes / 1e6:,.1f} MB in "
               f"{done.seconds:.2f} s (recorded over {done.recorded_seconds:.2f} s)"
               + (f"; {done.dropped} dropped" if done.dropped else ""))
