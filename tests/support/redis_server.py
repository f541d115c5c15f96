"""A redis-server child process for the Redis tests, and readers of a stream's raw entries.

The server requires a password and the links use database 3, so every URL carries both.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import redis

from arroyo_core.wire import decode
from services.processes import free_port
from tests.support.waiting import wait_for, wait_or_kill

PASSWORD = "s3cret:with@odd/chars"
DB = 3


class RedisServer:
    """A redis-server child process with its data (an append-only file) in ``directory``.

    Graceful restarts keep the data: streams, consumer groups and pending entries survive.
    Its port is picked before it starts (``free_port``): redis-server cannot be asked to pick
    one and say which (``--port 0`` turns tcp off), a restart must come back on the same
    one, and some tests hand out its URL before it runs.
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
