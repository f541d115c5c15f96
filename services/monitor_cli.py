"""``arroyo monitor``: the command; the view is :mod:`services.monitor`."""

from __future__ import annotations

import sys

import click

from arroyo_core.errors import ConfigError

from .serve import refuse


@click.command()
@click.argument("endpoints", nargs=-1, required=True, metavar="ADDRESS|CHAIN_FILE...")
@click.option("--interval", default=1.0, show_default=True,
              help="Seconds between two readings of every status socket.")
@click.option("--timeout", default=2.0, show_default=True,
              help="Seconds a service may leave a question unanswered before it is asked "
                   "anew (as a restarted service must be).")
def monitor(endpoints: tuple[str, ...], interval: float, timeout: float) -> None:
    """Show every stage of a chain live: frames, rates, queue fill, lag, lost, dropped and
    errors, read from the status sockets at ADDRESS... (or every service of CHAIN_FILE)
    each interval. A service that is not up yet or restarts is shown as such and picked
    up when it answers. Type q to quit."""
    from .monitor import run_monitor

    try:
        run_monitor(endpoints, interval=interval, timeout=timeout)
    except ConfigError as exc:
        sys.exit(refuse(exc))
