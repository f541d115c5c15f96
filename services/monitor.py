"""``arroyo monitor``: a live terminal view of every stage of a chain, from the services'
status sockets, redrawn each interval until ``q``.

:class:`StatusPoller` asks every status socket at once and waits for the answers up to a
deadline, so one silent service never holds up the screen; a socket whose question went
unanswered for ``timeout`` is opened anew (a REQ socket must have its answer before it
asks again), which is how a service that was not up yet, or restarted, is found. What is
shown of each answer comes from :mod:`services.monitor_model`; the table is drawn with rich.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator, Sequence

import msgpack
import zmq
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from arroyo_core.address import Address
from arroyo_core.status import ServiceStatus
from arroyo_core.transports.zmq.sockets import open_socket

from .monitor_model import StageRow, StageTracker
from .status_server import status_endpoints


def named_endpoints(words: Sequence[str]) -> list[tuple[str, str]]:
    """(name, status address) of each ``WORD``: a chain file's services by their names
    (so one that is not up yet is shown by name), an address by itself."""
    found = []
    for word in words:
        if word.endswith((".toml", ".yaml", ".yml")):
            from .chain import load_chain
            from .deploy import status_address

            chain = load_chain(word)
            for name in chain.order():
                replicas = chain.services[name].replicas
                for replica in range(replicas) if replicas > 1 else [None]:
                    address = status_address(chain, name, replica)
                    if address:
                        found.append((name if replica is None else f"{name}-{replica}",
                                      address))
        found += [(address, address) for address in status_endpoints([word])
                  if not word.endswith((".toml", ".yaml", ".yml"))]
    if not found:
        status_endpoints(words)  # says why (a chain file without status sockets)
    return found


class StatusPoller:
    """Asks the status sockets at ``endpoints`` together; :meth:`poll` returns the records
    that answered within its wait (None for the others, with why in :attr:`errors`)."""

    def __init__(self, endpoints: Sequence[str], timeout: float = 2.0) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.errors: dict[str, str] = {}
        self._sockets: dict[str, zmq.Socket] = {}
        self._asked: dict[str, float] = {}

    def _socket(self, endpoint: str) -> zmq.Socket:
        if endpoint not in self._sockets:
            target = Address.parse(endpoint, bind_by_default=False)
            if target.bind or target.host == "*":
                target = Address(target.text.replace("*", "127.0.0.1"), False)
            self._sockets[endpoint] = open_socket(zmq.REQ, target, {zmq.LINGER: 0},
                                                  "status query")
        return self._sockets[endpoint]

    def _reopen(self, endpoint: str) -> None:
        self._sockets.pop(endpoint).close(linger=0)
        self._asked.pop(endpoint, None)

    def poll(self, wait: float) -> dict[str, ServiceStatus | None]:
        """Ask every service not already asked, and collect answers for ``wait`` seconds."""
        now = time.monotonic()
        for endpoint in self.endpoints:
            if endpoint not in self._asked:
                with contextlib.suppress(zmq.Again):
                    self._socket(endpoint).send(b"status", zmq.NOBLOCK)
                    self._asked[endpoint] = now
        found: dict[str, ServiceStatus | None] = dict.fromkeys(self.endpoints)
        poller = zmq.Poller()
        waiting = {self._sockets[e]: e for e in self._asked}
        for socket in waiting:
            poller.register(socket, zmq.POLLIN)
        deadline = now + wait
        while waiting and (left := deadline - time.monotonic()) > 0:
            for socket, _ in poller.poll(int(left * 1000)):
                endpoint = waiting.pop(socket)
                poller.unregister(socket)
                del self._asked[endpoint]
                found[endpoint] = self._read(endpoint, socket.recv())
        now = time.monotonic()
        for endpoint in list(waiting.values()):
            if now - self._asked[endpoint] >= self.timeout:
                self.errors[endpoint] = f"no answer in {self.timeout:g} s"
                self._reopen(endpoint)
        return found

    def _read(self, endpoint: str, reply: bytes) -> ServiceStatus | None:
        try:
            data = msgpack.unpackb(reply, raw=False)
            record = ServiceStatus.from_dict(data)
        except Exception as exc:  # a garbled answer is shown as such, the monitor goes on
            self.errors[endpoint] = f"unreadable answer: {exc!r}"
            return None
        self.errors.pop(endpoint, None)
        return record

    def close(self) -> None:
        for socket in self._sockets.values():
            socket.close(linger=0)
        self._sockets.clear()
        self._asked.clear()


def _number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


STATE_STYLES = {"up": "green", "restarted": "yellow", "starting": "yellow"}
COLUMNS = ("SERVICE", "STATE", "RUN", "FRAME", "RECEIVED", "SENT", "MSG/S", "MB/S", "QUEUE",
           "LAG S", "LOST", "DROPPED", "ERRORS", "RESTARTS")


def render(rows: Sequence[StageRow], title: str) -> Group:
    """The monitor's screen: a title line and one row per stage."""
    table = Table(*COLUMNS, box=None, header_style="bold", pad_edge=False)
    for row in rows:
        queue = "-" if row.queue_depth is None else f"{row.queue_depth}/{row.queue_max}"
        if row.queue_fill is not None and row.queue_fill >= 0.9:
            queue = f"[red]{queue}[/red]"
        table.add_row(
            row.service, Text(row.state, style=STATE_STYLES.get(row.state, "red")),
            row.run or "-", _number(row.frame), _number(row.received), _number(row.sent),
            _number(row.rate, 1), _number(row.mb_per_s, 2), queue, _number(row.lag, 3),
            _lost(row.lost), _lost(row.dropped), _lost(row.errors), str(row.restarts))
    return Group(Text(title, style="bold"), table)


def _lost(value: int | None) -> str:
    if not value:
        return _number(value)
    return f"[red]{value:,}[/red]"


@contextlib.contextmanager
def key_reader() -> Iterator[Callable[[float], str]]:
    """A function that waits up to its argument (seconds) for keys typed and returns them
    ('' if none); the terminal is in cbreak mode (keys come unbuffered) until the end.
    Without a terminal on stdin it only waits."""
    stdin = sys.stdin
    if not stdin.isatty():
        idle = threading.Event()

        def wait(seconds: float) -> str:
            idle.wait(max(0.0, seconds))
            return ""

        yield wait
        return
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        def read(seconds: float) -> str:
            ready, _, _ = select.select([fd], [], [], max(0.0, seconds))
            return os.read(fd, 64).decode(errors="replace") if ready else ""

        yield read
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _leave(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_monitor(words: Sequence[str], interval: float = 1.0, timeout: float = 2.0,
                console: Console | None = None) -> None:
    """Redraw every stage of the chain each ``interval`` seconds until ``q`` is typed."""
    named = named_endpoints(words)
    endpoints = [address for _, address in named]
    trackers = {address: StageTracker(name) for name, address in named}
    poller = StatusPoller(endpoints, timeout)
    console = console or Console()
    # SIGTERM or a closed terminal: leave as q does, the terminal restored
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _leave)
    try:
        with key_reader() as keys, Live(console=console, screen=True, auto_refresh=False,
                                        redirect_stdout=False) as live:
            while True:
                started = time.monotonic()
                answers = poller.poll(wait=min(0.8 * interval, timeout))
                now = time.monotonic()
                rows = [trackers[e].update(now, answers[e]) for e in endpoints]
                title = (f"arroyo monitor  {time.strftime('%H:%M:%S')}  {len(endpoints)} "
                         f"service(s), every {interval:g} s  (q quits)")
                live.update(render(rows, title), refresh=True)
                while (left := started + interval - time.monotonic()) > 0:
                    if "q" in keys(left).lower():
                        return
    finally:
        poller.close()
