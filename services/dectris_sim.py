"""``arroyo dectris-sim``: a stand-in DECTRIS detector sending stream v2, to try the
``dectris`` source (and test it) without a detector."""

from __future__ import annotations

import signal
import sys
import threading

import click
import zmq

from arroyo_core.errors import ConfigError


@click.command("dectris-sim")
@click.option("--address", default="@tcp://*:31001", show_default=True,
              help="Where the PUSH socket binds (as a detector's does) or connects (>...).")
@click.option("--images", default=10, show_default=True, help="Images per series.")
@click.option("--series", default=1, show_default=True, help="Series to send, one after another.")
@click.option("--shape", default="512,512", show_default=True, help="Of each channel's image.")
@click.option("--dtype", default="uint16", show_default=True)
@click.option("--channels", default=2, show_default=True,
              help="Thresholds per image: threshold_1 ... threshold_N.")
@click.option("--compression", default="bslz4", show_default=True,
              type=click.Choice(["bslz4", "lz4", "none"]))
@click.option("--rate", default=0.0, show_default=True,
              help="Images per second; 0: as fast as the receivers take them.")
@click.option("--seed", default=0, show_default=True, help="Of the images.")
@click.option("--malformed", is_flag=True,
              help="Also send one malformed message of each kind after each series' first "
                   "image (not CBOR, truncated, not a map, unknown type, corrupt bslz4, "
                   "wrong dimensions): a listener counts and skips them.")
def dectris_sim(address: str, images: int, series: int, shape: str, dtype: str, channels: int,
                compression: str, rate: float, seed: int, malformed: bool) -> None:
    """Send SERIES series of stream v2 messages (start, IMAGES images, end), then exit.

    Prints READY with the bound address once its socket is open; SIGTERM ends the series
    being sent without its end message, as a detector that goes away would.
    """
    from arroyo_core.dectris import DectrisSimulator, malformed_messages

    try:
        size = [int(n) for n in shape.split(",")]
        simulator = DectrisSimulator(address, images=images, shape=size, dtype=dtype,
                                     channels=channels, compression=compression, rate=rate,
                                     seed=seed)
        endpoint = simulator.open()
    except (ConfigError, ValueError, TypeError) as exc:
        click.echo(f"error: dectris-sim: {exc}", err=True)
        sys.exit(2)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo(f"READY dectris-sim out={endpoint}", nl=True)
    bad = [data for _, data in malformed_messages()] if malformed else []
    for _ in range(series):
        if stop.is_set():
            break
        uid = simulator.series(stop, bad)
        click.echo(f"series {uid}: {'cut short' if stop.is_set() else 'sent'}")
    simulator.close(linger=0 if stop.is_set() else 30)
    zmq.Context.instance().term()  # returns once the queued messages have gone (or linger)
