"""Runs one service process: build, open, report ready, run until SIGTERM/SIGINT, drain.

A service says ``READY name`` once its sockets are open and ``EXIT name code`` as it ends
of its own accord (a clean stop, or its source failed): what a supervisor, or anything
else watching its output, can tell a kill from an exit by (services.supervisor_restarts).

Its grace period: after SIGTERM or SIGINT a service exits within ``drain_timeout`` +
``EXIT_MARGIN_S`` seconds whatever state it is in (mid-run, blocked on a full peer, with
no peer at all), inside the ``drain_timeout`` + 5 s that generated supervisor and compose
files allow (services.deploy.STOP_MARGIN_S). A second signal exits at once. Either way
the final ledger is logged (``NAME stopped; ledger: ...``) before the process ends.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from arroyo_core.config import ServiceConfig
from arroyo_core.errors import ConfigError
from arroyo_core.runtime import Runtime
from arroyo_core.service import build_runtime
from services.processes import echo_line
from services.status_server import StatusServer, status_address

log = logging.getLogger("arroyo.service")

EXIT_CONFIG = 2  # misconfigured: supervisor should not keep restarting it
EXIT_FAILED = 1
EXIT_MARGIN_S = 3.0  # after drain_timeout, for closing and exiting; see the module docstring
LAST_WORDS_S = 1.0  # how long an immediate exit waits for its ledger to be logged
STARTED = time.monotonic()  # about when the process started (a little after, in fact)


LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``service``, ``level``,
    ``logger``, ``message`` and, for an exception, ``exception`` (its traceback)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
                .isoformat(timespec="milliseconds"),
                "service": self.service, "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup_logging(level: str, name: str, log_format: str = "text") -> None:
    """Log to stdout at ``level``: as text lines, or one JSON object a line (``json``)."""
    handler = logging.StreamHandler(sys.stdout)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(name))
    else:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), force=True, handlers=[handler])


def _log_ledger(name: str, runtime: Runtime, code: int) -> None:
    if code:
        log.info("%s exits with code %d", name, code)
    log.info("%s stopped; ledger: %s", name, json.dumps(runtime.stats(), default=str))


def _exit_now(name: str, runtime: Runtime, why: str, code: int) -> None:
    """End the process at once, from any thread, with the final ledger logged: what was
    not yet sent is lost, and the ledger counts it.

    The last words are said by a thread of their own, waited for at most LAST_WORDS_S:
    called from a signal handler, this runs inside whatever the main thread was doing,
    which may hold a lock they need (the log's, a sink's), and nothing may keep the
    process from ending.
    """
    def last_words() -> None:
        log.warning("%s: %s; exiting now, without waiting for what is still unsent", name,
                    why)
        _log_ledger(name, runtime, code)
        _say(f"EXIT {name} {code}")

    try:
        words = threading.Thread(target=last_words, name="arroyo-last-words", daemon=True)
        words.start()
        words.join(LAST_WORDS_S)
    finally:
        os._exit(code)


def _say(line: str) -> None:
    """Print a line for whatever watches this process (in one write: a log line on stderr,
    sharing its pipe, cannot land mid-line); a reader that has gone (its pipe is closed,
    e.g. `arroyo run` was killed) must not stop the service from stopping."""
    try:
        echo_line(line)
    except OSError:
        pass


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


def bound_addresses(runtime: Runtime, status: StatusServer | None) -> list[str]:
    """``KEY=ADDRESS`` for each address the service listens at (``in``, ``out`` per
    output, ``status``), ports the system chose filled in: what its READY line adds, so
    that whoever started it with ``@tcp://host:*`` can connect."""
    record = runtime.status()
    links = [("in", record.input), *(("out", output) for output in record.outputs)]
    found = [f"{key}={link.bound}" for key, link in links if link is not None and link.bound]
    if status is not None and status.bound:
        found.append(f"status={status.bound}")
    return found


def serve(config: ServiceConfig, check: bool = False, min_uptime: float = 0.0) -> int:
    """Run the service ``config`` describes; return the process exit code.

    ``check`` builds and checks everything a start would (plug-ins and their options,
    links and their options, addresses, optional packages) without opening anything.
    ``min_uptime``: a service that ends cleanly sooner than this after its start stays up
    (idle, its sockets closed) until then, so that a supervisor that calls anything ending
    sooner a failed start (supervisor's ``startsecs``) does not run a finished run again.
    """
    name = config.section
    try:
        runtime = build_runtime(config)
        if config.status:
            status_address(config.status, name)
        if config.metrics:
            from services.metrics_deploy import metrics_address

            metrics_address(config.metrics, name)
        if check:
            print(f"config ok: {name} ({config.role})", flush=True)
            return 0
    except ConfigError as exc:
        return refuse(exc)
    return serve_runtime(name, runtime, config.status, min_uptime, config.metrics)


def serve_runtime(name: str, runtime: Runtime, status_at: str | None = None,
                  min_uptime: float = 0.0, metrics_at: str | None = None) -> int:
    """Open ``runtime`` and run it as service ``name`` (see :func:`serve`), with a status
    socket at ``status_at`` and a metrics endpoint at ``metrics_at`` if given; return the
    process exit code."""
    try:
        runtime.open()
        status = StatusServer(status_at, runtime.stats, name) if status_at else None
    except ConfigError as exc:
        return refuse(exc)
    except (ImportError, OSError) as exc:  # a plug-in's open(): a package or a path it needs
        return refuse(ConfigError(f"[{name}] cannot open: {exc}"))

    signalled = threading.Event()
    finished = threading.Event()  # run() has returned: nothing is left to drain
    deadline: list[float] = []  # when a signalled service must be gone, once signalled

    def on_signal(signum: int, frame: Any) -> None:
        signame = signal.Signals(signum).name
        if finished.is_set():
            signalled.set()  # ends _stay_up; the run is over and its ledger logged
            return
        if signalled.is_set():
            if signum == signal.SIGHUP:
                return  # the kernel repeats a parent-death signal (services.processes)
            _exit_now(name, runtime, f"second {signame}", 128 + signum)
        log.info("%s received %s; draining and stopping (within %.1f s; a second signal "
                 "exits at once)", name, signame, runtime.drain_timeout + EXIT_MARGIN_S)
        signalled.set()
        deadline.append(time.monotonic() + runtime.drain_timeout + EXIT_MARGIN_S)
        # A last resort for a stop that hangs in a state nobody foresaw: exit within the
        # grace period all the same, ledger logged, rather than be killed without one.
        last_resort = threading.Timer(runtime.drain_timeout + EXIT_MARGIN_S, _exit_now,
                                      (name, runtime, "stopping took past its grace period",
                                       EXIT_FAILED))
        last_resort.daemon = True
        last_resort.start()
        runtime.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)  # a closed terminal, or the parent gone
    _say(" ".join([f"READY {name}", *bound_addresses(runtime, status)]))
    log.info("%s ready", name)
    metrics = MetricsStarter(name, runtime, metrics_at) if metrics_at else None
    code = EXIT_FAILED  # unless run() returns
    try:
        runtime.run()
        code = EXIT_FAILED if runtime.listener_error else 0
    finally:
        finished.set()
        if status is not None:
            status.close()
        if metrics is not None:
            metrics.close()
        # signalled: what is left of the grace period, less a margin to log and exit in
        flush_s = (max(0.1, deadline[0] - time.monotonic() - 1.0) if deadline
                   else runtime.drain_timeout)
        _flush_sockets(flush_s)
        _log_ledger(name, runtime, code)
        _say(f"EXIT {name} {code}")
    if code == 0:
        _stay_up(name, min_uptime, signalled)
    return code


class MetricsStarter:
    """Starts a service's metrics endpoint (services.metrics) in the background once the
    service is READY: importing prometheus-client takes a noticeable part of a start on a
    busy host, and supervisor gives a start only ``startsecs``. An endpoint that cannot
    listen (its port taken) is logged as an error and the service runs on without it: its
    metrics are for watching it, and must not be what stops it."""

    def __init__(self, name: str, runtime: Runtime, address: str) -> None:
        self.server: Any = None
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._start, args=(name, runtime, address),
                                        name="arroyo-metrics-start", daemon=True)
        self._thread.start()

    def _start(self, name: str, runtime: Runtime, address: str) -> None:
        from services.metrics import MetricsServer, with_runtime

        try:
            server = MetricsServer(address, with_runtime(runtime), name)
        except ConfigError as exc:
            log.error("%s; the service runs on without metrics", exc)
            return
        with self._lock:
            if self._closed:
                server.close()
                return
            self.server = server
        log.info("%s: metrics at http://%s/metrics", name, server.bound)

    def close(self) -> None:
        self._thread.join(timeout=5)
        with self._lock:
            self._closed = True
            if self.server is not None:
                self.server.close()


def _stay_up(name: str, min_uptime: float, signalled: threading.Event) -> None:
    """Wait until the process has been up ``min_uptime`` seconds (see :func:`serve`), or
    until it is asked to stop."""
    left = STARTED + min_uptime - time.monotonic()
    if left > 0 and not signalled.is_set():
        log.info("%s ended %.1f s after it started; staying up %.1f s more, so that "
                 "supervisor takes this for a clean end rather than a failed start (and does "
                 "not run it again)", name, min_uptime - left, left)
        signalled.wait(left)
