"""Memory budgets in bytes for links and queues, turned into ZeroMQ's message counts.

ZeroMQ bounds its queues by a number of *messages* (the high-water marks SNDHWM and
RCVHWM, per peer), but what runs out is *bytes*: 1000 queued 16 MiB frames are 16 GiB.
A link given ``max_bytes`` therefore sets its high-water mark from the size of its
messages::

    hwm = max(1, max_bytes // ((message_bytes + OVERHEAD_BYTES * frames) * peers))

``message_bytes`` is the expected size of one message if configured; if not, the link
learns it from the messages it sees and lowers its high-water mark whenever a message is
larger than any before (libzmq 4.2+ applies a new high-water mark to open connections
too). The mark never rises again, so a run of small messages after big ones does not
open the door to queueing many big ones. What this bound does *not* cover, honestly:

- a message larger than every one before it may still be queued behind up to ``hwm``
  of the old size once, before the mark comes down;
- each TCP connection's kernel buffers (up to ``net.ipv4.tcp_wmem``/``tcp_rmem``, a few
  MiB each) hold more bytes outside the process;
- ``peers`` is the number the link was told to expect; each extra peer gets its own
  queue of ``hwm`` messages.

A service's ``memory_limit`` is split by :func:`split_memory_limit` between its input
link, its processing queue and its output links (which share their part).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError

log = logging.getLogger(__name__)

OVERHEAD_BYTES = 256  # per frame: libzmq's msg_t, its allocation and the pipe's slot
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
          "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value: Any, what: str = "size") -> int:
    """Bytes from ``4096``, ``"64MiB"``, ``"1.5 GB"`` or ``"512k"``; ConfigError otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} {value!r} is not a number of bytes")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _SIZE.match(str(value))
        if not match or match.group(2).lower() not in _UNITS:
            raise ConfigError(f"{what} {value!r} is not a size like 4096, '64MiB' or '1GB'")
        number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * _UNITS[unit])
    if size < 1:
        raise ConfigError(f"{what} {value!r} must be at least one byte")
    return size


def frames_nbytes(frames: Sequence[Any]) -> int:
    """Bytes a multipart message occupies in a ZeroMQ queue, overhead included."""
    return sum(map(len, frames)) + OVERHEAD_BYTES * len(frames)


class LinkBudget:
    """The high-water mark that keeps one link's queued messages within ``max_bytes``.

    Parameters
    ----------
    max_bytes
        Bytes this side of the link may hold queued (all its peers together).
    message_bytes
        Expected size of one message; None to learn it from the messages themselves.
    peers
        How many peers the link has, each with its own queue.
    link
        The link's name for log lines.
    """

    def __init__(self, max_bytes: Any, message_bytes: Any = None, peers: int = 1,
                 link: str = "link") -> None:
        self.max_bytes = parse_bytes(max_bytes, "max_bytes")
        self.largest = parse_bytes(message_bytes, "message_bytes") if message_bytes else 0
        self.peers = max(1, int(peers))
        self.link = link

    def hwm(self, default: int) -> int:
        """The high-water mark to open the socket with (``default`` until a size is known)."""
        return self._hwm_for(self.largest) if self.largest else default

    def _hwm_for(self, message_bytes: int) -> int:
        return max(1, self.max_bytes // (message_bytes * self.peers))

    def observe(self, nbytes: int) -> int | None:
        """Note one message's size; return a new (lower) high-water mark if it needs one."""
        if nbytes <= self.largest:
            return None
        before = self._hwm_for(self.largest) if self.largest else None
        self.largest = nbytes
        hwm = self._hwm_for(nbytes)
        if hwm == before:
            return None
        log.info("%s: messages of %d bytes; high-water mark %d keeps %d peer queue(s) within "
                 "%d bytes", self.link, nbytes, hwm, self.peers, self.max_bytes)
        return hwm

    def stats(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes, "message_bytes": self.largest,
                "hwm": self._hwm_for(self.largest) if self.largest else None}


def split_memory_limit(config: dict[str, Any]) -> dict[str, Any]:
    """Return ``config`` with its ``memory_limit`` shared out where nothing more precise
    is set: equal parts to the input link's ``max_bytes``, the queue's ``queue_bytes`` and
    the output links (one part shared between them)."""
    limit = config.get("memory_limit")
    if not limit:
        return config
    total = parse_bytes(limit, "memory_limit")
    outs = config.get("out")
    n_outs = len(outs) if isinstance(outs, list) else (1 if outs else 0)
    parts = (1 if config.get("in") else 0) + 1 + (1 if n_outs else 0)
    share = total // parts
    config = dict(config)
    config.setdefault("queue_bytes", share)
    for key, count in (("in", 1 if config.get("in") else 0), ("out", n_outs)):
        if count:
            options = dict(config.get(f"{key}_options") or {})
            options.setdefault("max_bytes", max(1, share // count))
            config[f"{key}_options"] = options
    return config
