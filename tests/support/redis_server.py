"""What the Redis integration tests share: a redis-server child process, the chains' first
hop (a Feeder in the test process) and last hop (a FrameSink: a raw PULL socket and
``wire.decode``, no Arroyo ledger), and readers of a stream's raw entries.

The server requires a password and the links use database 3, so every URL carries both.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import redis
import zmq
from harness import wait_for, wait_or_kill

from arroyo_core.link import ZmqPublisher
from arroyo_core.message import Event, Start, Stop
from arroyo_core.wire import decode
from services.processes import free_port

PASSWORD = "s3cret:with@odd/chars"
DB = 3


class RedisServer:
    """A redis-server child process with its data (an append-only file) in ``directory``.

    Graceful restarts keep the data: streams, consumer groups and pending entries survive.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = DB, password: str | None = PASSWORD) -> str:
        from urllib.parse import quote

        auth = f":{quote(password, safe='')}@" if password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def client(self) -> Any:
        return redis.Redis.from_url(self.url(), protocol=2)

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--logfile", "redis.log", "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--requirepass", PASSWORD],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        probe = self.client()

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log()
            try:
                return bool(probe.ping())
            except redis.RedisError:
                return False

        wait_for(answers, 10, "redis-server to answer PING")
        probe.close()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            wait_or_kill(self.process, 10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text()[-2000:] if path.exists() else ""


class FrameSink:
    """The chain's last hop, in the test process: a PULL socket recording each message.
    It binds ``address``, or connects to it if it starts with ``>``."""

    def __init__(self, zmq_socket: Callable[[int], zmq.Socket], address: str,
                 services: list[Any]) -> None:
        self.socket = zmq_socket(zmq.PULL)
        if address.startswith(">"):
            self.socket.connect(address[1:])
        else:
            self.socket.bind(address)
        self.services = services  # whose output a failure shows
        self.frames: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self.stop_meta: dict[str, Any] | None = None

    def starter(self, service: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap the ``service`` factory so that this sink shows what they logged."""
        def start(*args: Any, **kwargs: Any) -> Any:
            self.services.append(service(*args, **kwargs))
            return self.services[-1]
        return start

    def pump(self, until: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name}:\n" + "\n".join(list(p.lines)[-15:])
                                  for p in self.services)
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                     f"got {self.kinds}\n{tails}")
            if self.socket.poll(20):
                message, _ = decode(self.socket.recv_multipart(copy=False))
                self.kinds[message.kind] += 1
                if isinstance(message, Event):
                    self.frames[message.meta["frame"]] += 1
                elif isinstance(message, Stop):
                    self.stop_meta = message.meta


def redis_entries(client: Any, stream: str) -> dict[bytes, tuple[str, int | None]]:
    """Entry id -> (kind, frame) for every entry of ``stream``, read from the headers."""
    entries = {}
    for entry_id, fields in client.xrange(stream):
        message, _ = decode([fields[b"h"]] + [fields[k] for k in fields if k[:1] == b"a"])
        entries[entry_id] = (message.kind, message.meta.get("frame"))
    return entries


def acknowledged(client: Any, stream: str, group: str) -> set[bytes]:
    """Entry ids the group has delivered and that were acknowledged."""
    info = {g["name"]: g for g in client.xinfo_groups(stream)}[group.encode()]
    last = info["last-delivered-id"]
    pending = {p["message_id"] for p in client.xpending_range(stream, group, "-", "+", 10**6)}
    ids = [i for i, _ in client.xrange(stream, "-", last)]
    return set(ids) - pending


class Feeder:
    """The chain's first hop, in the test process: a ZmqPublisher sending one run (Start,
    ``frames`` Events stamped with ``frame``, Stop) at ``rate`` from a thread.

    It stays connected until teardown: a source service that exits right after its run
    can lose the run's tail on its own ZeroMQ hop when the next hop is slow, which is not
    what these tests are about.
    """

    def __init__(self, address: str, frames: int, rate: float) -> None:
        self.publisher = ZmqPublisher("@" + address, linger_ms=0)
        self.publisher.open()
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(frames, rate), daemon=True)
        self.thread.start()

    def _run(self, frames: int, rate: float) -> None:
        image = np.arange(256, dtype=np.uint16).reshape(16, 16)
        self.publisher.publish(Start({"run": "r"}))
        began = time.monotonic()
        for frame in range(frames):
            if self.halt.wait(max(0.0, began + frame / rate - time.monotonic())):
                return  # (the wait paces the run; it is not waiting out a race)
            self.publisher.publish(Event({"run": "r", "frame": frame}, {"image": image}))
        self.publisher.publish(Stop({"run": "r", "frames_sent": frames}))

    def close(self) -> None:
        self.halt.set()
        self.publisher.abandon()
        self.thread.join(10)
        self.publisher.close()
