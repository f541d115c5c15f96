"""``arroyo operator|publisher --replicas N``: a pool of N worker processes started by hand,
each the same command as one worker (``--replicas 1``), named ``NAME-K``, its input a
pool's worker (``--in-pattern worker`` unless given) and its status port + K; a chain
file's ``replicas`` does the same under `arroyo run`, supervisor and compose."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from arroyo_core.config import ServiceConfig

from .chain_links import nth_address
from .processes import ServiceProcess

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def worker_argv(config: ServiceConfig, argv: list[str], k: int) -> list[str]:
    """The command line of worker ``k``: ``argv`` with the settings that make it one (the
    last of a repeated option wins)."""
    name = f"{config.section}-{k}"
    more = ["--replicas", "1", "--name", name]
    if not config.in_pattern:
        more += ["--in-pattern", "worker"]
    if config.status:
        more += ["--status", nth_address(config.status, k)]
    if config.metrics:
        from .metrics_deploy import nth_metrics

        more += ["--metrics", nth_metrics(config.metrics, k)]
    return [*argv, *more]


def run_replicas(config: ServiceConfig, argv: list[str], check: bool) -> int:
    """Run (or ``check``) ``config.replicas`` workers until they all end; SIGINT, SIGTERM
    or SIGHUP is passed on to each. Returns 0 if every one ended 0."""
    count = 1 if check else config.replicas  # one check says it for all of them
    workers = [ServiceProcess.from_argv(worker_argv(config, argv, k), f"{config.section}-{k}",
                                        echo=True, own_session=True, die_with_parent=True)
               for k in range(count)]
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()
        for worker in workers:
            worker.signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        codes = [worker.process.wait() for worker in workers]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for worker in workers:
            worker.output()  # lets the reader threads echo the last lines
    if not check:
        click.echo(f"{config.section}: workers exited with "
                   f"{', '.join(str(code) for code in codes)}", err=True)
    return 0 if all(code == 0 for code in codes) else 1
