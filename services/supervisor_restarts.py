"""A supervisord plug-in: a service killed soon after it started is started again at once.

supervisor cannot tell a service that was killed from one that failed to start: any exit
within ``startsecs`` of the start counts as a failed start, which supervisor retries after
1, 2, 3 s and, after ``startretries`` in a row, gives up on (FATAL). So a stage of a chain
killed a few times in a row, each time soon after its restart, was restarted later and
later (the chain stalled meanwhile), then not at all.

An Arroyo service says when it is ready (``READY name``: its sockets are open, so its
configuration is good) and when it exits of its own accord (``EXIT name code``). This
plug-in reads those lines from each program's output (``stdout_events_enabled``, set in
the generated programs) and, when a program dies within ``startsecs`` after it said READY
and without saying EXIT, it was killed (``kill -9``, the OOM killer, a crash of the
interpreter): the plug-in clears supervisor's back-off for it, so supervisor starts it
again at once, as it does for a program killed after ``startsecs``, and never marks it
FATAL for that. Everything else is left to supervisor: a service misconfigured (exit 2
before READY) or failing (EXIT 1) soon after its start still backs off and ends FATAL.

It is loaded by deploy/supervisor/supervisord.conf::

    [rpcinterface:arroyo]
    supervisor.rpcinterface_factory = services.supervisor_restarts:make_interface

which needs this package importable by supervisord (``pip install 'arroyo-stream[deploy]'``
installs supervisor next to it). Its one XML-RPC method, ``arroyo.getRestarts()``, says how
many times it restarted each program. It imports supervisor's modules only, never the rest
of Arroyo, and never raises into supervisord.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

READY = re.compile(rb"^READY \S", re.MULTILINE)
EXIT = re.compile(rb"^EXIT \S+ -?\d+", re.MULTILINE)
TAIL_BYTES = 256  # of the last partial line kept, in case a marker is split between reads
MAX_TRACKED = 1024  # pids followed at once: far more programs than a host runs


class _Instance:
    """What one running program (one pid) has said so far."""

    __slots__ = ("ready", "exited", "tail", "started")

    def __init__(self) -> None:
        self.ready = False
        self.exited = False
        self.tail = b""
        self.started = time.monotonic()

    def read(self, data: bytes) -> None:
        text = self.tail + data
        self.ready = self.ready or READY.search(text) is not None
        self.exited = self.exited or EXIT.search(text) is not None
        self.tail = text[text.rfind(b"\n") + 1:][-TAIL_BYTES:]


class RestartsInterface:
    """Follows every program's READY/EXIT lines and clears supervisor's back-off for one
    killed after READY (see the module docstring). Made once per supervisord HTTP server;
    they share one set of subscriptions."""

    def __init__(self, supervisord: Any) -> None:
        self.supervisord = supervisord
        self.instances: dict[int, _Instance] = {}
        self.restarts: dict[str, int] = {}

    def subscribe(self, events: Any) -> None:
        """Follow supervisor's ``events`` module (supervisord clears it when it reloads)."""
        handlers: list[tuple[type, Callable[[Any], None]]] = [
            (events.ProcessLogStdoutEvent, self._output),
            (events.ProcessStateBackoffEvent, self._backoff),
            (events.ProcessStateExitedEvent, self._gone),
            (events.ProcessStateStoppedEvent, self._gone),
        ]
        for kind, handler in handlers:
            events.subscribe(kind, _guarded(handler, self._log))

    # --- events (on supervisord's own thread: quick, and never raising) ------------------

    def _output(self, event: Any) -> None:
        instance = self.instances.get(event.pid)
        if instance is None:
            if len(self.instances) >= MAX_TRACKED:
                self.instances.pop(next(iter(self.instances)))
            instance = self.instances[event.pid] = _Instance()
        data = event.data if isinstance(event.data, bytes) else str(event.data).encode()
        instance.read(data)

    def _gone(self, event: Any) -> None:
        self.instances.pop(event.process.pid, None)

    def _backoff(self, event: Any) -> None:
        process = event.process
        instance = self.instances.pop(process.pid, None)
        if instance is None or not instance.ready or instance.exited:
            return  # never ready (misconfigured?) or ended on its own: supervisor's call
        name = _name(process)
        self.restarts[name] = self.restarts.get(name, 0) + 1
        # change_state(BACKOFF) has just counted a failed start and set a delay; clear
        # both, so supervisor's next transition starts it again and never gives up on it.
        process.backoff = 0
        process.delay = 0
        self._log(f"arroyo: {name} was killed {time.monotonic() - instance.started:.1f} s "
                  "after it started, having said READY: starting it again at once "
                  "(not a failed start)")

    def _log(self, message: str) -> None:
        self.supervisord.options.logger.warn(message)

    # --- XML-RPC ----------------------------------------------------------------------

    def getRestarts(self) -> dict[str, int]:  # noqa: N802 (supervisor's XML-RPC spelling)
        """How many times each program (``group:name``) was started again at once."""
        return dict(self.restarts)


def _name(process: Any) -> str:
    group = process.group.config.name if process.group is not None else ""
    return f"{group}:{process.config.name}" if group else process.config.name


def _guarded(handler: Callable[[Any], None],
             log: Callable[[str], None]) -> Callable[[Any], None]:
    """``handler``, but an error is logged instead of raised into supervisord's loop."""
    def call(event: Any) -> None:
        try:
            handler(event)
        except Exception as exc:  # a bug here must never take supervisord down
            log(f"arroyo: restart plug-in failed on {type(event).__name__}: {exc!r}")
    call.arroyo_restarts = True  # type: ignore[attr-defined]
    return call


_INTERFACE: RestartsInterface | None = None


def make_interface(supervisord: Any, **config: Any) -> RestartsInterface:
    """supervisord's ``rpcinterface_factory``: the one interface, subscribed once."""
    from supervisor import events

    global _INTERFACE
    subscribed = any(getattr(callback, "arroyo_restarts", False)
                     for _, callback in events.callbacks)
    if _INTERFACE is None or _INTERFACE.supervisord is not supervisord or not subscribed:
        _INTERFACE = RestartsInterface(supervisord)
        _INTERFACE.subscribe(events)
    return _INTERFACE
