"""Runs one service process: build, open, report ready, run until SIGTERM/SIGINT, drain."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from arroyo_core.config import ServiceConfig
from arroyo_core.errors import ConfigError
from arroyo_core.service import build_runtime
from services.status_server import StatusServer, status_address

log = logging.getLogger("arroyo.service")

EXIT_CONFIG = 2  # misconfigured: supervisor should not keep restarting it
EXIT_FAILED = 1


def setup_logging(level: str, name: str) -> None:
    logging.basicConfig(
        stream=sys.stdout, level=level.upper(), force=True,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")


def _flush_sockets(timeout: float) -> None:
    """Terminate the ZeroMQ context, so messages still queued on closed sockets leave.

    A socket's close returns at once and libzmq's I/O thread sends what is queued (for up
    to the socket's linger) only while the context lives; pyzmq does not terminate it at
    interpreter exit, so without this a source that ends its run loses its last messages.
    Runs in a daemon thread: a socket some component left open would block term() forever.
    """
    import zmq

    terminator = threading.Thread(target=zmq.Context.instance().term, daemon=True,
                                  name="arroyo-zmq-term")
    terminator.start()
    terminator.join(timeout)
    if terminator.is_alive():
        log.warning("ZeroMQ sockets still open after %.1f s; exiting without flushing them",
                    timeout)


def refuse(exc: ConfigError) -> int:
    """Say why a service cannot start, in one line on stderr (supervisor's programs send
    stderr to the same log as stdout, so logging it as well would say it twice); the exit
    code."""
    print(f"error: {exc}", file=sys.stderr, flush=True)
    return EXIT_CONFIG


def serve(config: ServiceConfig, check: bool = False) -> int:
    """Run the service ``config`` describes; return the process exit code.

    ``check`` builds and checks everything a start would (plug-ins and their options,
    links and their options, addresses, optional packages) without opening anything.
    """
    name = config.section
    try:
        runtime = build_runtime(config)
        if config.status:
            status_address(config.status, name)
        if check:
            print(f"config ok: {name} ({config.role})", flush=True)
            return 0
        runtime.open()
        status = StatusServer(config.status, runtime.stats, name) if config.status else None
    except ConfigError as exc:
        return refuse(exc)
    except (ImportError, OSError) as exc:  # a plug-in's open(): a package or a path it needs
        return refuse(ConfigError(f"[{name}] cannot open: {exc}"))

    def on_signal(signum: int, frame: Any) -> None:
        log.info("%s received %s; draining and stopping", name, signal.Signals(signum).name)
        runtime.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"READY {name}", flush=True)
    log.info("%s ready", name)
    try:
        runtime.run()
    finally:
        if status is not None:
            status.close()
        _flush_sockets(runtime.drain_timeout)
    log.info("%s stopped; ledger: %s", name, runtime.stats())
    return EXIT_FAILED if runtime.listener_error else 0
