"""Redis links: Arroyo messages over Redis Streams (durable, acknowledged) and Redis
pub/sub (fire-and-forget fan-out), with the same header and array bytes as on ZeroMQ.

::

    RedisLink                          URL, ledger, a RedisConnection from open to close
    ├── RedisPublisher                 numbering, outage policy, counters
    │   ├── RedisStreamPublisher       XADD ... MAXLEN ~ maxlen (Redis memory stays bounded)
    │   └── RedisPubSubPublisher       PUBLISH: whoever is subscribed now gets it, nobody else
    └── RedisListener                  reconnect loop, decoding, loss ledger
        ├── RedisStreamListener        XREADGROUP, XACK once the runtime has handled a message
        └── RedisPubSubListener        SUBSCRIBE: may miss messages; misses show as seq gaps

How the frames sit in a stream entry or a pub/sub value is in ``redis_framing``. When
Redis goes away, every link retries with exponential back-off (bounded by
``max_backoff``), logs the outage when it begins and ends, and counts what it could not
deliver; none of them raises out of ``publish`` or ``start`` for it. A malformed entry
is counted by reason, logged once and acknowledged out of the way.

Delivery guarantees, in one place:

- Stream: at-least-once from XADD to the listener's runtime. An entry is acknowledged
  (XACK) only after the runtime reports it handled (``Listener.handled``), i.e. processed
  and handed to every publisher; a listener restarted under the same consumer name reads
  its pending entries first. Duplicates carry the sender's ``src``/``seq`` twice and are
  dropped by the ledger within one listener's life; after a restart, the entries that
  were handled but not yet acknowledged are delivered again. Entries trimmed by MAXLEN
  before the group read them show as seq gaps (``missing``).
- Pub/sub: at-most-once. Every message a publisher is asked to send takes a sequence
  number, sent or not, so a subscriber sees every loss, its own or the publisher's, as
  a gap; the publisher counts failed publishes and publishes nobody heard.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from ...components import Deliver, Listener, Publisher
from ...errors import ConfigError, DecodeError
from ...ledger import InputLedger, OutputLedger
from ...link import new_sender_id
from ...message import Message
from ...wire import DEFAULT_LIMITS, Limits, decode, encode
from .framing import frames_from_fields, pack_frames, stream_fields, unpack_frames

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # the [redis] extra
    raise ConfigError("Redis links need redis-py: pip install 'arroyo-stream[redis]'") from exc

log = logging.getLogger(__name__)

# Errors that mean "Redis is not there right now" (AuthenticationError and BusyLoadingError,
# raised while a restarted server loads its data, are ConnectionErrors): retry later.
OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError)
OUTAGE_POLICIES = ("wait", "drop")
STILL_DOWN_LOG_S = 30.0  # while an outage lasts, how often to say so again
LARGE_ARG = 64 * 1024


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and the ledger."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _command_packer() -> Any:
    """A packer that lets megabyte payloads go to the socket as they are.

    redis-py packs commands with hiredis when it is installed, which copies every argument
    twice: fine for small commands, 4x slower than redis-py's own packer for a 1 MiB array
    (which hands memoryviews to ``sendall`` untouched). Returns None (redis-py's default)
    if this redis-py lacks either packer.
    """
    try:
        from redis._parsers.encoders import Encoder
        from redis.connection import HiredisRespSerializer, PythonRespSerializer
        from redis.utils import HIREDIS_AVAILABLE
    except ImportError:
        return None
    large = PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode)
    if not HIREDIS_AVAILABLE:
        return None
    small = HiredisRespSerializer()

    class SizeAwarePacker:
        def pack(self, *args: Any) -> list[Any]:
            for arg in args:
                if isinstance(arg, memoryview) and arg.nbytes > LARGE_ARG:
                    return large.pack(*args)
            return small.pack(*args)

    return SizeAwarePacker()


_PACKER = _command_packer()


def client_options(socket_timeout: float = 10.0, connect_timeout: float = 2.0) -> dict[str, Any]:
    """Keyword arguments for ``redis.Redis.from_url`` as the links use them: no redis-py
    retries (the links retry themselves), RESP2 replies, large payloads sent uncopied."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout,
        "socket_keepalive": True, "retry": Retry(NoBackoff(), 0), "protocol": 2}
    if _PACKER is not None:
        options["command_packer"] = _PACKER
    return options


class RedisConnection:
    """One redis-py client for one URL, plus Arroyo's reconnect policy.

    redis-py's own retries are off: the links decide what a failure means (wait, drop,
    acknowledge later). After a failure no command is tried before ``retry_at``; the delay
    doubles from ``min_backoff`` up to ``max_backoff`` and resets once a command succeeds.
    An outage is logged when it begins, every 30 s while it lasts, and when it ends.
    """

    def __init__(self, url: str, link: str, *, socket_timeout: float, connect_timeout: float,
                 max_backoff: float, min_backoff: float = 0.05) -> None:
        options = client_options(socket_timeout, connect_timeout)
        try:
            self.client = redis.Redis.from_url(url, **options)  # connects on first command
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{link}: {exc}") from None
        self.link = link
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.connected = False
        self.outages = 0
        self.failures = 0
        self.delay = min_backoff
        self.retry_at = 0.0
        self.outage_began: float | None = None
        self._next_note = 0.0

    def check(self) -> None:
        """PING once: a wrong password or database is a ConfigError; an unreachable server
        is only logged (the link keeps trying)."""
        try:
            self.client.ping()
        except redis.AuthenticationError as exc:
            raise ConfigError(f"{self.link}: Redis refused the credentials: {exc}") from None
        except redis.ResponseError as exc:
            raise ConfigError(f"{self.link}: {exc}") from None
        except OUTAGE_ERRORS as exc:
            self.down(exc)
            return
        self.up()

    def due(self) -> bool:
        """True when a command may be tried (no back-off delay is running)."""
        return time.monotonic() >= self.retry_at

    def wait(self, cancel: threading.Event) -> bool:
        """Sleep until a command may be tried; False if ``cancel`` was set first."""
        return not cancel.wait(max(0.0, self.retry_at - time.monotonic()))

    def attempt(self, command: Callable[..., Any], *args: Any,
                errors: type[Exception] | tuple[type[Exception], ...] = OUTAGE_ERRORS) -> bool:
        """Run ``command(client, *args)`` once and book the outcome: True if it succeeded,
        False if it raised one of ``errors`` (counted; the back-off starts). Other errors
        propagate with nothing booked."""
        try:
            command(self.client, *args)
        except errors as exc:
            self.down(exc)
            return False
        self.up()
        return True

    def up(self) -> None:
        """A command succeeded."""
        if self.outage_began is not None:
            log.warning("%s: Redis is back after %.1f s (%d failed attempts so far)", self.link,
                        time.monotonic() - self.outage_began, self.failures)
            self.outage_began = None
            self.delay = self.min_backoff
        self.connected = True

    def down(self, exc: BaseException) -> None:
        """A command failed because Redis is unavailable: back off before the next try."""
        now = time.monotonic()
        self.failures += 1
        self.connected = False
        if self.outage_began is None:
            self.outage_began = now
            self.outages += 1
            self._next_note = now + STILL_DOWN_LOG_S
            log.warning("%s: Redis unavailable (%s: %s); retrying with back-off up to %.1f s",
                        self.link, type(exc).__name__, exc, self.max_backoff)
        elif now >= self._next_note:
            self._next_note = now + STILL_DOWN_LOG_S
            log.warning("%s: Redis still unavailable after %.0f s (%s)", self.link,
                        now - self.outage_began, exc)
        self.retry_at = now + self.delay
        self.delay = min(self.delay * 2, self.max_backoff)

    def close(self) -> None:
        self.client.close()

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "outages": self.outages,
                "failed_attempts": self.failures,
                "down_for": (time.monotonic() - self.outage_began
                             if self.outage_began is not None else 0.0)}


def _check_url(url: str, role: str) -> str:
    """Validate a ``redis://`` URL without connecting; return it redacted for display."""
    try:
        redis.connection.parse_url(url)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{role}: {redact(str(url))} is not a Redis URL ({exc})") from None
    return redact(url)


class RedisLink:
    """What every Redis link has: its URL (shown with the password redacted), a ledger
    named after its ``target`` (set what ``target`` reads before ``__init__``), and a
    :class:`RedisConnection` from ``open`` to ``close``."""

    kind = "redis"

    def __init__(self, url: str, direction: str, ledger_type: Callable[[str], Any], *,
                 max_backoff: float, socket_timeout: float, connect_timeout: float) -> None:
        self.url = url
        self.shown_url = _check_url(url, f"{self.kind} {direction}")
        self.max_backoff = float(max_backoff)
        self.socket_timeout = float(socket_timeout)
        self.connect_timeout = float(connect_timeout)
        self.ledger = ledger_type(f"{self.kind} {direction} {self.target} at {self.shown_url}")
        self.connection: RedisConnection | None = None

    @property
    def target(self) -> str:
        """What the link writes to or reads from, e.g. ``stream 'frames'``."""
        raise NotImplementedError

    def open(self) -> None:
        self.connection = RedisConnection(
            self.url, self.ledger.link, socket_timeout=self.socket_timeout,
            connect_timeout=self.connect_timeout, max_backoff=self.max_backoff)
        self.connection.check()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def stats(self) -> dict[str, Any]:
        redis_stats = self.connection.stats() if self.connection is not None else {}
        return {**self.ledger.stats(), "redis": {"url": self.shown_url, **redis_stats}}


class RedisPublisher(RedisLink, Publisher):
    """Base of the Redis publishers: numbering, the outage policy and the counters.

    Parameters
    ----------
    url
        ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS, or
        ``unix:///path/to/redis.sock?db=0`` (as ``redis.Redis.from_url`` reads them).
    outage
        What ``publish`` does while Redis is unavailable: ``wait`` retries (with back-off)
        until it is back, which pushes back on the sender; ``drop`` counts the message as
        dropped and returns at once. On shutdown a waiting publish is abandoned (counted).
    max_backoff
        Longest pause, in seconds, between two attempts to reach Redis.
    socket_timeout, connect_timeout
        Seconds before a command or a connection attempt counts as failed.
    """

    ledger: OutputLedger

    def __init__(self, url: str, *, outage: str, max_backoff: float = 2.0,
                 socket_timeout: float = 10.0, connect_timeout: float = 2.0) -> None:
        if outage not in OUTAGE_POLICIES:
            raise ConfigError(f"outage {outage!r} is not one of {OUTAGE_POLICIES}")
        super().__init__(url, "output", OutputLedger, max_backoff=max_backoff,
                         socket_timeout=socket_timeout, connect_timeout=connect_timeout)
        self.outage = outage
        self.src = new_sender_id()
        self.seq = 0
        self._abandoned = threading.Event()
        self._refusals: set[str] = set()

    def publish(self, message: Message) -> None:
        frames = encode(message, src=self.src, seq=self.seq)
        self.seq += 1  # taken even if the send fails, so receivers see the loss as a gap
        if self._send(self._prepare(frames)):
            self.ledger.sent += 1

    def _prepare(self, frames: list[Any]) -> Any:
        """Turn frames into the argument of :meth:`_command` (once, not per attempt)."""
        raise NotImplementedError

    def _command(self, client: redis.Redis, payload: Any) -> None:
        raise NotImplementedError

    def _send(self, payload: Any) -> bool:
        """True once ``payload`` is sent; False if it was dropped (and counted)."""
        connection = self.connection
        assert connection is not None, "publish() before open()"
        while True:
            if not connection.due():
                if self.outage == "drop":
                    self.ledger.drop("redis unavailable")
                    return False
                if not connection.wait(self._abandoned):
                    self.ledger.drop("redis unavailable until shutdown")
                    return False
            try:
                if connection.attempt(self._command, payload):
                    return True
            except redis.ResponseError as exc:  # Redis refused this message: retrying won't help
                reason = f"refused by redis ({str(exc).split(' ', 1)[0]})"
                if reason not in self._refusals:
                    self._refusals.add(reason)
                    log.error("%s: Redis refused a %d-byte message: %s", self.ledger.link,
                              _payload_nbytes(payload), exc)
                self.ledger.drop(reason)
                return False

    def abandon(self) -> None:
        self._abandoned.set()

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "src": self.src, "next_seq": self.seq}


def _payload_nbytes(payload: Any) -> int:
    if isinstance(payload, dict):
        return sum(memoryview(v).nbytes for v in payload.values())
    return memoryview(payload).nbytes


class RedisStreamPublisher(RedisPublisher):
    """Appends each message as one entry to a Redis stream (``XADD``), capped at about
    ``maxlen`` entries (``MAXLEN ~``), so Redis holds at most about ``maxlen`` messages
    of this stream however far behind the readers are.

    Parameters
    ----------
    url
        See :class:`RedisPublisher`.
    stream
        The stream's key.
    maxlen
        Entries kept (approximately: Redis trims whole internal nodes, so a few more may
        stay). The memory bound is about ``maxlen`` times the message size. A reader more
        than ``maxlen`` entries behind loses the oldest ones; it counts them as missing.
        0 turns trimming off (unbounded memory).
    outage
        ``wait`` (default: nothing is lost while Redis is down, the chain slows down) or
        ``drop``. See :class:`RedisPublisher` for the other parameters.
    """

    kind = "redis-stream"

    def __init__(self, url: str, stream: str, maxlen: int = 1000, outage: str = "wait",
                 **options: Any) -> None:
        if not stream:
            raise ConfigError("redis-stream output needs a 'stream' key name")
        if int(maxlen) < 0:
            raise ConfigError(f"maxlen {maxlen!r} must be 0 (no cap) or positive")
        self.stream = str(stream)
        self.maxlen = int(maxlen) or None
        super().__init__(url, outage=outage, **options)

    @property
    def target(self) -> str:
        return f"stream {self.stream!r}"

    def _prepare(self, frames: list[Any]) -> dict[bytes, Any]:
        return stream_fields(frames)

    def _command(self, client: redis.Redis, payload: dict[bytes, Any]) -> None:
        # redis-py types fields as an invariant dict of a union; bytes -> buffers is valid
        client.xadd(self.stream, payload,  # type: ignore[arg-type]
                    maxlen=self.maxlen, approximate=True)


class RedisPubSubPublisher(RedisPublisher):
    """Publishes each message on a Redis pub/sub channel (``PUBLISH``): fire-and-forget.

    Only subscribers connected at that moment get a message; Redis keeps no copy. Losses
    are counted: failed publishes as ``dropped``, publishes nobody heard as ``unheard``,
    and receivers see both as seq gaps. Redis disconnects a subscriber whose unread
    output exceeds ``client-output-buffer-limit pubsub`` (32 MiB hard by default): raise
    it on the server for large frames.

    Parameters
    ----------
    url
        See :class:`RedisPublisher`.
    channel
        The channel's name.
    subscribers
        Before a run's Start, wait until at least this many clients subscribe to the
        channel (``PUBSUB NUMSUB``), so that they do not miss the run's beginning.
    peer_timeout
        Seconds to wait for them before starting anyway (0: wait forever).
    outage
        ``drop`` (default: a live fan-out does not stall for Redis) or ``wait``.
    """

    kind = "redis-pubsub"

    def __init__(self, url: str, channel: str, subscribers: int = 0, peer_timeout: float = 30.0,
                 outage: str = "drop", **options: Any) -> None:
        if not channel:
            raise ConfigError("redis-pubsub output needs a 'channel' name")
        self.channel = str(channel)
        self.subscribers = int(subscribers)
        self.peer_timeout = float(peer_timeout)
        self.unheard = 0
        self._buffer = bytearray()
        super().__init__(url, outage=outage, **options)

    @property
    def target(self) -> str:
        return f"channel {self.channel!r}"

    def publish(self, message: Message) -> None:
        if self.subscribers and message.kind == "start":
            self._wait_for_subscribers()
        super().publish(message)

    def _prepare(self, frames: list[Any]) -> memoryview:
        packed = pack_frames(frames, self._buffer)
        # grown if this message needed more room; reused next time
        self._buffer = cast(bytearray, packed.obj)  # a view on the bytearray given or made
        return packed

    def _command(self, client: redis.Redis, payload: memoryview) -> None:
        if client.publish(self.channel, payload) == 0:
            self.unheard += 1
            if self.unheard == 1:
                log.warning("%s: a message was published with no subscriber listening; "
                            "further ones are only counted ('unheard')", self.ledger.link)

    def _wait_for_subscribers(self) -> None:
        connection = self.connection
        assert connection is not None, "publish() before open()"
        log.info("%s: waiting for %d subscriber(s) before starting the run",
                 self.ledger.link, self.subscribers)
        deadline = time.monotonic() + self.peer_timeout if self.peer_timeout else None
        while not self._abandoned.is_set():
            if connection.due():
                try:
                    numsub = dict(connection.client.pubsub_numsub(self.channel))
                    connection.up()
                    if numsub.get(self.channel.encode(), 0) >= self.subscribers:
                        return
                except OUTAGE_ERRORS as exc:
                    connection.down(exc)
            if deadline is not None and time.monotonic() > deadline:
                log.warning("%s: fewer than %d subscriber(s) after %.0f s; starting anyway",
                            self.ledger.link, self.subscribers, self.peer_timeout)
                return
            self._abandoned.wait(0.05)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "unheard": self.unheard}


class RedisListener(RedisLink, Listener):
    """Base of the Redis listeners: the receive loop that survives Redis going away.

    Parameters
    ----------
    url
        See :class:`RedisPublisher`.
    block_ms
        How long one read waits for data; also how often the loop looks at its stop flag.
    max_backoff, socket_timeout, connect_timeout
        As for :class:`RedisPublisher`.
    max_message_bytes
        Larger messages are rejected (counted as malformed, reason ``size``).
    """

    ledger: InputLedger

    def __init__(self, url: str, *, block_ms: int = 100, max_backoff: float = 2.0,
                 socket_timeout: float = 10.0, connect_timeout: float = 2.0,
                 max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes) -> None:
        self.block_ms = int(block_ms)
        self.limits = Limits(max_message_bytes=int(max_message_bytes))
        # a read blocks for up to block_ms: the socket must wait longer than that
        super().__init__(url, "input", InputLedger, max_backoff=max_backoff,
                         socket_timeout=max(float(socket_timeout), self.block_ms / 1000 + 1.0),
                         connect_timeout=connect_timeout)

    def open(self) -> None:
        super().open()
        connection = self.connection
        assert connection is not None
        if connection.connected:
            try:
                self._set_up(connection.client)
            except redis.ResponseError as exc:  # e.g. WRONGTYPE: the key is not a stream
                raise ConfigError(f"{self.ledger.link}: {exc}") from None
            except OUTAGE_ERRORS as exc:
                connection.down(exc)
                self._connection_lost()

    def start(self, deliver: Deliver) -> None:
        connection = self.connection
        assert connection is not None, "start() before open()"
        stop_requested = self.stop_requested
        while not stop_requested.is_set():
            if not connection.due() and not connection.wait(stop_requested):
                break
            # any RedisError: an outage, or a server that refuses our reads
            if not connection.attempt(self._receive, deliver, errors=redis.RedisError):
                self._connection_lost()

    def _set_up(self, client: redis.Redis) -> None:
        """Create what reading needs (a consumer group, a subscription): on open if Redis
        is there, else from :meth:`_receive` once it is."""
        raise NotImplementedError

    def _receive(self, client: redis.Redis, deliver: Deliver) -> None:
        """Read once (waiting at most ``block_ms``) and deliver what came."""
        raise NotImplementedError

    def _connection_lost(self) -> None:
        """Forget per-connection state after a failure."""

    def _decode(self, frames_of: Callable[[Any], list[Any]], value: Any,
                where: str) -> Message | None:
        """Decode one received value; count and return None if it is malformed or seen."""
        try:
            message, envelope = decode(frames_of(value), self.limits)
        except DecodeError as exc:
            self.ledger.reject(exc.reason, f"{where}: {exc}")
            return None
        if not self.ledger.observe(envelope.src, envelope.seq):
            return None  # a duplicate (e.g. an XADD retried after its reply was lost)
        return message


class RedisStreamListener(RedisListener):
    """Reads a Redis stream as one consumer of a consumer group (``XREADGROUP``) and
    acknowledges (``XACK``) each entry once the runtime has handled it: at-least-once.

    On start, and after every reconnection, it first reads the entries the group delivered
    to this consumer that it has not acknowledged (its pending entries), then new ones.
    So a listener killed and restarted under the same ``consumer`` name resumes where it
    left off: acknowledged entries are not read again, the others are read again.
    Acknowledgements go out with the next read (within ``block_ms``) and on close.
    "Handled" means handed to the publishers: messages a ZeroMQ output still queues in
    this process (up to its ``hwm``) are lost with it if it is killed, acknowledged or not.

    Parameters
    ----------
    url
        See :class:`RedisPublisher`.
    stream
        The stream's key.
    group
        Consumer group; created (with the stream, if missing) at ``start_id``.
    consumer
        This listener's name in the group (default: the host's name). Each listener of a
        group needs its own; a restarted listener must reuse its name to resume its
        pending entries.
    start_id
        Where a new group begins: ``0`` (everything the stream still holds) or ``$`` (only
        entries added from now on).
    batch
        Most entries read per round trip; fewer when entries are large (``batch_bytes``).
    batch_bytes
        Bytes a read aims at: the count is ``batch_bytes`` over the last entry's size.
    claim_idle
        If positive, on start take over entries pending for longer than this many seconds
        at other consumers of the group (``XAUTOCLAIM``): a listener that died for good
        under another name leaves nothing stuck. 0 (default) takes over nothing.
    block_ms, max_backoff, socket_timeout, connect_timeout, max_message_bytes
        See :class:`RedisListener`.
    """

    kind = "redis-stream"

    def __init__(self, url: str, stream: str, group: str = "arroyo",
                 consumer: str | None = None, start_id: str = "0", batch: int = 64,
                 batch_bytes: int = 8 * 2**20, claim_idle: float = 0.0, **options: Any) -> None:
        if not stream or not group or consumer == "":
            raise ConfigError("redis-stream input needs 'stream', 'group' and 'consumer' names")
        self.stream = str(stream)
        self.group = str(group)
        self.consumer = str(consumer or socket.gethostname())
        self.start_id = str(start_id)
        self.batch = max(1, int(batch))
        self.batch_bytes = max(1, int(batch_bytes))
        self.claim_idle = float(claim_idle)
        super().__init__(url, **options)
        self._count = self.batch
        self._prepared = False      # group created and claims made (per connection life)
        self._history: Any = "0"    # read own pending entries after this id; None: new ones
        self._last_id: Any = None   # newest entry id delivered in this life
        # Entries delivered and not yet handled, in delivery order, and the serial of each
        # delivered message: handled(m) acknowledges every entry up to m's (runtimes handle
        # in delivery order). Weak keys: a message dropped by the queue frees its slot.
        self._serial = 0
        self._inflight: deque[tuple[int, Any]] = deque()
        self._serial_of: weakref.WeakKeyDictionary[Message, int] = weakref.WeakKeyDictionary()
        self._acks: deque[Any] = deque()  # handled entries, acknowledged with the next read
        self.acked = 0
        self.trimmed = 0

    @property
    def target(self) -> str:
        return f"stream {self.stream!r} group {self.group!r}"

    def _set_up(self, client: redis.Redis) -> None:
        try:
            client.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
            log.info("%s: created consumer group at %s", self.ledger.link, self.start_id)
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
                        self.ledger.link, claimed, self.claim_idle)
            self._history = "0"

    def _receive(self, client: redis.Redis, deliver: Deliver) -> None:
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
                            "creating it again", self.ledger.link)
                self._prepared = False
            raise
        if acks:
            self.acked += replies[0]
        reply = replies[-1]
        entries = reply[0][1] if reply else []
        if history and not entries:
            self._history = None  # pending entries done: on to new ones
            return
        if entries:
            nbytes = sum(len(v) for v in entries[-1][1].values()) or 1
            self._count = max(1, min(self.batch, self.batch_bytes // nbytes))
        for entry_id, fields in entries:
            if history:
                self._history = entry_id
            self._last_id = entry_id
            self._take(entry_id, fields, deliver)

    def _take(self, entry_id: Any, fields: dict[bytes, Any], deliver: Deliver) -> None:
        if not fields:
            # Delivered to us before, never acknowledged, then trimmed by MAXLEN: its data
            # is gone, and whether it was handled is unknown. Count it and let it go.
            self.trimmed += 1
            if self.trimmed == 1:
                log.error("%s: pending entry %s was trimmed by MAXLEN before it was "
                          "acknowledged; its data is lost (further ones are only counted)",
                          self.ledger.link, _text(entry_id))
            self._acks.append(entry_id)
            return
        message = self._decode(frames_from_fields, fields, f"entry {_text(entry_id)}")
        if message is None:
            self._acks.append(entry_id)  # malformed or duplicate: out of the group's way
            return
        self._serial += 1
        self._serial_of[message] = self._serial
        self._inflight.append((self._serial, entry_id))
        deliver(message)

    def handled(self, message: Message) -> None:
        serial = self._serial_of.pop(message, None)
        if serial is None:
            return
        inflight = self._inflight
        while inflight and inflight[0][0] <= serial:
            self._acks.append(inflight.popleft()[1])

    def _take_acks(self) -> list[Any]:
        acks: list[Any] = []
        while self._acks and len(acks) < 10_000:
            acks.append(self._acks.popleft())
        return acks

    def _connection_lost(self) -> None:
        # Entries the group delivered while the reply was lost sit in our pending list
        # after the newest one we received: read them before new ones.
        self._history = self._last_id or "0"

    def close(self) -> None:
        connection = self.connection
        if connection is not None:
            acks = list(self._acks)
            self._acks.clear()
            if acks:
                try:
                    self.acked += connection.client.xack(self.stream, self.group, *acks)
                except redis.RedisError as exc:
                    log.warning("%s: %d acknowledgements could not be sent (%s); those "
                                "entries will be delivered again", self.ledger.link,
                                len(acks), exc)
            if self._inflight:
                log.warning("%s: %d entries were delivered but not handled; they stay "
                            "pending and will be delivered again", self.ledger.link,
                            len(self._inflight))
        super().close()

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        stats["redis"].update(stream=self.stream, group=self.group, consumer=self.consumer,
                              acked=self.acked, unacked=len(self._inflight) + len(self._acks),
                              trimmed_pending=self.trimmed)
        return stats


class RedisPubSubListener(RedisListener):
    """Subscribes to a Redis pub/sub channel: receives what is published while it is
    subscribed, and nothing published while it is not (e.g. during a Redis outage).
    Such losses are counted as seq gaps (``missing``) once messages from the same
    sender arrive again.

    Parameters
    ----------
    url
        See :class:`RedisPublisher`.
    channel
        The channel's name.
    block_ms, max_backoff, socket_timeout, connect_timeout, max_message_bytes
        See :class:`RedisListener`.
    """

    kind = "redis-pubsub"

    def __init__(self, url: str, channel: str, **options: Any) -> None:
        if not channel:
            raise ConfigError("redis-pubsub input needs a 'channel' name")
        self.channel = str(channel)
        super().__init__(url, **options)
        self._pubsub: Any = None
        self.subscriptions = 0

    @property
    def target(self) -> str:
        return f"channel {self.channel!r}"

    def _set_up(self, client: redis.Redis) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(self.channel)
        self.subscriptions += 1
        log.info("%s: subscribed", self.ledger.link)

    def _receive(self, client: redis.Redis, deliver: Deliver) -> None:
        if self._pubsub is None:
            self._set_up(client)
        note = self._pubsub.get_message(timeout=self.block_ms / 1000)
        if note is None or note.get("type") != "message":
            return
        message = self._decode(unpack_frames, note["data"], f"channel {self.channel!r}")
        if message is not None:
            deliver(message)

    def _connection_lost(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # the connection is broken already; nothing to release
                pass
            self._pubsub = None

    def close(self) -> None:
        self._connection_lost()
        super().close()

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        stats["redis"].update(channel=self.channel, subscriptions=self.subscriptions)
        return stats


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
