"""Redis Streams: a sender that appends entries (XADD) and a receiver that reads them as one
consumer of a consumer group (XREADGROUP) and acknowledges them (XACK) when the link says
so. The entry layout is :mod:`.framing`'s."""

from __future__ import annotations

import logging
import socket
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import redis

from ...budget import parse_bytes
from ...errors import ConfigError, DecodeError
from ...transport import FrameReceiver, Frames, FrameSender
from ...wire import DEFAULT_LIMITS
from .connection import ClientSettings, RedisConnection, check_outage
from .framing import frames_from_fields, stream_fields

log = logging.getLogger(__name__)

MAX_ACKS_PER_READ = 10_000


class StreamSender(FrameSender):
    """Appends each message as one entry to a Redis stream (``XADD``), capped at about
    ``maxlen`` entries (``MAXLEN ~``), so Redis holds at most about ``maxlen`` messages
    of this stream however far behind the readers are.

    Parameters
    ----------
    stream
        The stream's key.
    maxlen
        Entries kept (approximately: Redis trims whole internal nodes, so a few more may
        stay). The memory bound is about ``maxlen`` times the message size. A reader more
        than ``maxlen`` entries behind loses the oldest ones; it counts them as missing.
        0 turns trimming off (unbounded memory).
    outage
        What a send does while Redis is unavailable: ``wait`` (default) retries with
        back-off until it is back, so nothing is lost and the chain slows down; ``drop``
        counts the event as dropped and returns at once (a Start or Stop still waits: a
        lost one corrupts the run). On shutdown a waiting send is abandoned (counted).
    max_bytes
        Taken so that a service's ``memory_limit`` may cover every link; this sender holds
        one message at a time (Redis holds the rest, see ``maxlen``).
    """

    def __init__(self, url: str, settings: ClientSettings, link: str, stream: str,
                 maxlen: int = 1000, outage: str = "wait", max_bytes: Any = None) -> None:
        if int(maxlen) < 0:
            raise ConfigError(f"maxlen {maxlen!r} must be 0 (no cap) or positive")
        self.stream = stream
        self.maxlen = int(maxlen) or None
        self.outage = check_outage(outage)
        self.connection = RedisConnection(url, link, settings)
        self._abandoned = threading.Event()

    def open(self) -> None:
        self.connection.open()

    def send(self, frames: Frames, droppable: bool) -> str | None:
        return self.connection.send(self._xadd, stream_fields(frames),
                                    self.outage == "drop" and droppable, self._abandoned)

    def _xadd(self, client: redis.Redis, fields: dict[bytes, Any]) -> None:
        # redis-py types fields as an invariant dict of a union; bytes -> buffers is valid
        client.xadd(self.stream, fields,  # type: ignore[arg-type]
                    maxlen=self.maxlen, approximate=True)

    def abandon(self) -> None:
        self._abandoned.set()

    def close(self) -> None:
        self.connection.close()

    def status(self) -> dict[str, Any]:
        return self.connection.status(stream=self.stream)


class StreamReceiver(FrameReceiver):
    """Reads a Redis stream as one consumer of a consumer group (``XREADGROUP``); an entry
    stays pending in the group until the link acknowledges it (``XACK``).

    On start, and after every reconnection, it first reads the entries the group delivered
    to this consumer that it has not acknowledged (its pending entries), then new ones.
    So a receiver restarted under the same ``consumer`` name resumes where it left off.
    Acknowledgements go out with the next read (within ``block_ms``) and on close. A
    pending entry that ``MAXLEN`` trimmed has lost its data: it is counted
    (``trimmed_pending``) and acknowledged, never delivered.

    Parameters
    ----------
    stream
        The stream's key.
    group
        Consumer group; created (with the stream, if missing) at ``start_id``.
    consumer
        This receiver's name in the group (default: the host's name). Each reader of a
        group needs its own; a restarted one must reuse its name to resume its pending
        entries.
    start_id
        Where a new group begins: ``0`` (everything the stream still holds) or ``$`` (only
        entries added from now on).
    batch
        Most entries read per round trip; fewer when entries are large (``batch_bytes``).
    batch_bytes
        Bytes a read aims at: the count is ``batch_bytes`` over the last entry's size.
        ``max_bytes`` (a service's share of its ``memory_limit``) caps it.
    claim_idle
        If positive, on start take over entries pending for longer than this many seconds
        at other consumers of the group (``XAUTOCLAIM``): a reader that died for good
        under another name leaves nothing stuck. 0 (default) takes over nothing.
    block_ms
        How long one read waits for new entries; also how often it looks at its stop flag.
    max_message_bytes
        Checked by the link step (a Redis reply arrives whole).
    """

    acknowledges = True

    def __init__(self, url: str, settings: ClientSettings, link: str, stream: str,
                 group: str = "arroyo", consumer: str | None = None, start_id: str = "0",
                 batch: int = 64, batch_bytes: Any = 8 * 2**20, claim_idle: float = 0.0,
                 block_ms: int = 100, max_bytes: Any = None,
                 max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes) -> None:
        if not group or consumer == "":
            raise ConfigError("a Redis stream input needs 'group' and 'consumer' names")
        self.stream = stream
        self.group = str(group)
        self.consumer = str(consumer or socket.gethostname())
        self.start_id = str(start_id)
        self.batch = max(1, int(batch))
        self.batch_bytes = parse_bytes(batch_bytes, "batch_bytes")
        if max_bytes:
            self.batch_bytes = min(self.batch_bytes, parse_bytes(max_bytes, "max_bytes"))
        self.claim_idle = float(claim_idle)
        self.block_ms = int(block_ms)
        self.link = link
        # a read blocks for up to block_ms: the socket must wait longer than that
        self.connection = RedisConnection(url, link, settings,
                                          min_socket_timeout=self.block_ms / 1000 + 1.0)
        self._count = self.batch
        self._prepared = False      # group created and claims made (per connection life)
        self._history: Any = "0"    # read own pending entries after this id; None: new ones
        self._last_id: Any = None   # newest entry id read in this life
        self._acks: deque[Any] = deque()  # acknowledged by the link; XACKed with the next read
        self.acked = 0
        self.trimmed = 0

    def open(self) -> None:
        self.connection.open(self._set_up)

    def receive(self, stop: threading.Event) -> Iterator[tuple[Frames | DecodeError, Any]]:
        for entries in self.connection.reads(self._read, stop, self._connection_lost):
            for entry_id, fields in entries:
                if not fields:
                    self._trimmed(entry_id)
                    continue
                try:
                    frames: Frames | DecodeError = frames_from_fields(fields)
                except DecodeError as exc:
                    frames = DecodeError(exc.reason, f"entry {_text(entry_id)}: {exc.detail}")
                yield frames, entry_id

    def acknowledge(self, tokens: list[Any]) -> None:
        self._acks.extend(tokens)  # (a deque: the processing thread appends, we pop)

    def _set_up(self, client: redis.Redis) -> None:
        """Create the group (on open if Redis is there, else on the first read)."""
        try:
            client.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
            log.info("%s: created consumer group at %s", self.link, self.start_id)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        if self.claim_idle > 0:
            self._claim(client)
        self._prepared = True

    def _claim(self, client: redis.Redis) -> None:
        cursor, claimed = "0-0", 0
        while True:
            reply = client.xautoclaim(self.stream, self.group, self.consumer,
                                      int(self.claim_idle * 1000), start_id=cursor,
                                      count=1000, justid=True)
            cursor, ids = reply[0], reply[1]
            claimed += len(ids)
            if cursor in (b"0-0", "0-0"):
                break
        if claimed:
            log.warning("%s: took over %d entries idle for over %.0f s at other consumers",
                        self.link, claimed, self.claim_idle)
            self._history = "0"

    def _read(self, client: redis.Redis) -> list[Any]:
        """XACK what the link acknowledged and read the next entries, in one round trip."""
        if not self._prepared:
            self._set_up(client)
        acks = self._take_acks()
        history = self._history
        pipe = client.pipeline(transaction=False)
        if acks:
            pipe.xack(self.stream, self.group, *acks)
        pipe.xreadgroup(self.group, self.consumer, {self.stream: history or ">"},
                        count=self._count, block=None if history else self.block_ms)
        try:
            replies = pipe.execute()
        except redis.RedisError as exc:
            self._acks.extendleft(reversed(acks))  # XACK is idempotent: send them again
            if "NOGROUP" in str(exc):
                log.warning("%s: the consumer group is gone (Redis lost its data?); "
                            "creating it again", self.link)
                self._prepared = False
            raise
        if acks:
            self.acked += replies[0]
        reply = replies[-1]
        entries = reply[0][1] if reply else []
        if not entries:
            if history:
                self._history = None  # pending entries done: on to new ones
            return entries
        nbytes = sum(len(v) for v in entries[-1][1].values()) or 1
        self._count = max(1, min(self.batch, self.batch_bytes // nbytes))
        self._last_id = entries[-1][0]
        if history:
            self._history = self._last_id
        return entries

    def _take_acks(self) -> list[Any]:
        acks: list[Any] = []
        while self._acks and len(acks) < MAX_ACKS_PER_READ:
            acks.append(self._acks.popleft())
        return acks

    def _trimmed(self, entry_id: Any) -> None:
        # Delivered to us before, never acknowledged, then trimmed by MAXLEN: its data is
        # gone, and whether it was handled is unknown. Count it and let it go.
        self.trimmed += 1
        if self.trimmed == 1:
            log.error("%s: pending entry %s was trimmed by MAXLEN before it was "
                      "acknowledged; its data is lost (further ones are only counted)",
                      self.link, _text(entry_id))
        self._acks.append(entry_id)

    def _connection_lost(self) -> None:
        # Entries the group delivered while the reply was lost sit in our pending list
        # after the newest one we read: read them before new ones.
        self._history = self._last_id or "0"

    def close(self) -> None:
        client = self.connection.client
        acks = list(self._acks)
        self._acks.clear()
        if client is not None and acks:
            try:
                self.acked += client.xack(self.stream, self.group, *acks)
            except redis.RedisError as exc:
                log.warning("%s: %d acknowledgements could not be sent (%s); those entries "
                            "will be delivered again", self.link, len(acks), exc)
        self.connection.close()

    def status(self) -> dict[str, Any]:
        return self.connection.status(
            stream=self.stream, group=self.group, consumer=self.consumer, acked=self.acked,
            acks_queued=len(self._acks), trimmed_pending=self.trimmed)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
