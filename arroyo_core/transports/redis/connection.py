"""One redis-py client per link end, and how it outlives Redis going away.

redis-py's own retries are off: a link decides what a failure means (wait, drop,
acknowledge later). :class:`RedisConnection` keeps the back-off and says when an outage
begins, while it lasts and when it ends; :class:`ClientSettings` is the plain description
(the options every Redis sender and receiver takes) it is built from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any, TypeVar
from urllib.parse import quote

from ...address import redact
from ...errors import ConfigError

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

T = TypeVar("T")


def client_url(client: Any) -> str:
    """The ``redis://`` (or ``rediss://``) URL of a redis-py client, plain or asyncio:
    links make their own connections, to where the client's go."""
    pool: Any = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict) or "host" not in kwargs:
        raise ConfigError(f"{type(client).__name__} is neither a Redis URL nor a redis-py "
                          "client on a TCP address (redis://host:port/db)")
    scheme = "rediss" if "SSL" in pool.connection_class.__name__ else "redis"
    user, password = kwargs.get("username"), kwargs.get("password")
    login = f"{quote(user or '', safe='')}:{quote(password, safe='')}@" if password else ""
    return f"{scheme}://{login}{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def check_url(url: str) -> None:
    """Raise ConfigError (showing ``url`` redacted) if redis-py cannot read ``url``."""
    try:
        redis.connection.parse_url(url)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{redact(str(url))} is not a Redis URL ({exc})") from None


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


@dataclass(frozen=True)
class ClientSettings:
    """How a link end talks to Redis: the options every Redis sender and receiver takes.

    Parameters
    ----------
    max_backoff
        Longest pause, in seconds, between two attempts to reach Redis.
    socket_timeout, connect_timeout
        Seconds before a command or a connection attempt counts as failed.
    ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs
        For ``rediss://`` (TLS): as redis-py names them.
    """

    max_backoff: float = 2.0
    socket_timeout: float = 10.0
    connect_timeout: float = 2.0
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_backoff", "socket_timeout", "connect_timeout"):
            object.__setattr__(self, name, float(getattr(self, name)))  # "0.5" from a query

    @classmethod
    def take(cls, options: dict[str, Any]) -> ClientSettings:
        """The settings among ``options``, removed from it (the rest are the link's own)."""
        return cls(**{f.name: options.pop(f.name) for f in fields(cls) if f.name in options})

    def client_kwargs(self, url: str, min_socket_timeout: float = 0.0) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url(url)``; a blocking read of
        ``min_socket_timeout`` seconds must not time out the socket."""
        kwargs = client_options(max(self.socket_timeout, min_socket_timeout),
                                self.connect_timeout)
        tls = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name.startswith("ssl_") and getattr(self, f.name) is not None}
        if tls and not url.startswith("rediss://"):
            raise ConfigError(f"{', '.join(tls)} need a rediss:// (TLS) address")
        return {**kwargs, **tls}


class RedisConnection:
    """One redis-py client for one URL, from :meth:`open` to :meth:`close`, plus Arroyo's
    reconnect policy.

    After a failure no command is tried before ``retry_at``; the delay doubles from
    ``min_backoff`` up to ``max_backoff`` and resets once a command succeeds. An outage is
    logged when it begins, every 30 s while it lasts, and when it ends.
    """

    def __init__(self, url: str, link: str, settings: ClientSettings,
                 min_socket_timeout: float = 0.0, min_backoff: float = 0.05) -> None:
        check_url(url)
        self.url = url
        self.shown_url = redact(url)
        self.link = link
        self.kwargs = settings.client_kwargs(url, min_socket_timeout)
        self.min_backoff = min_backoff
        self.max_backoff = settings.max_backoff
        self.client: redis.Redis | None = None
        self.connected = False
        self.outages = 0
        self.failures = 0
        self.delay = min_backoff
        self.retry_at = 0.0
        self.outage_began: float | None = None
        self._next_note = 0.0
        self._refusals: set[str] = set()

    def open(self, prepare: Callable[[redis.Redis], Any] | None = None) -> None:
        """Make the client, PING, then ``prepare(client)`` (e.g. create a consumer group):
        a wrong password or database, or a key of the wrong type, is a ConfigError; an
        unreachable server is only logged (the link keeps trying)."""
        try:
            client = self.client = redis.Redis.from_url(self.url, **self.kwargs)  # lazily
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.link}: {exc}") from None
        try:
            client.ping()
            if prepare is not None:
                prepare(client)
        except redis.AuthenticationError as exc:
            raise ConfigError(f"{self.link}: Redis refused the credentials: {exc}") from None
        except OUTAGE_ERRORS as exc:  # (a ReadOnlyError too: a replica during failover)
            self.down(exc)
            return
        except redis.ResponseError as exc:  # e.g. WRONGTYPE: the key is not a stream
            raise ConfigError(f"{self.link}: {exc}") from None
        self.up()

    def due(self) -> bool:
        """True when a command may be tried (no back-off delay is running)."""
        return time.monotonic() >= self.retry_at

    def wait(self, cancel: threading.Event) -> bool:
        """Sleep until a command may be tried; False if ``cancel`` was set first."""
        return not cancel.wait(max(0.0, self.retry_at - time.monotonic()))

    def attempt(self, command: Callable[..., Any], *args: Any) -> bool:
        """Run ``command(client, *args)`` once and book the outcome: True if it succeeded,
        False if Redis was unavailable (counted; the back-off starts). Other errors
        propagate with nothing booked."""
        try:
            command(self.client, *args)
        except OUTAGE_ERRORS as exc:
            self.down(exc)
            return False
        self.up()
        return True

    def send(self, command: Callable[..., Any], payload: Any, drop: bool,
             cancel: threading.Event) -> str | None:
        """Run ``command(client, payload)`` until it succeeds and return None; or return
        why it was given up: Redis is unavailable and ``drop`` is true, ``cancel`` was set
        while it waited, or Redis refused the payload (retrying would not help)."""
        while True:
            if not self.due():
                if drop:
                    return "redis unavailable"
                if not self.wait(cancel):
                    return "redis unavailable until shutdown"
            try:
                if self.attempt(command, payload):
                    return None
            except redis.ResponseError as exc:  # e.g. OOM, or a value over proto-max-bulk-len
                reason = f"refused by redis ({str(exc).split(' ', 1)[0]})"
                if reason not in self._refusals:
                    self._refusals.add(reason)
                    log.error("%s: Redis refused a %d-byte message: %s", self.link,
                              _nbytes(payload), exc)
                return reason

    def reads(self, read: Callable[[redis.Redis], T], stop: threading.Event,
              lost: Callable[[], None]) -> Iterator[T]:
        """Yield ``read(client)`` again and again until ``stop`` is set, backing off after
        a failure. Any Redis error counts as an outage (Redis is gone, or refuses our
        reads): it is booked, and ``lost`` forgets what the broken connection held."""
        client = self.client
        assert client is not None, "reads() before open()"
        while not stop.is_set():
            if not self.due() and not self.wait(stop):
                return
            try:
                result = read(client)
            except redis.RedisError as exc:
                self.down(exc)
                lost()
                continue
            self.up()
            yield result

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
        if self.client is not None:
            self.client.close()
            self.client = None

    def status(self, **more: Any) -> dict[str, Any]:
        """The ``redis`` entry of a link's ledger: this connection's counters and ``more``."""
        return {"redis": {
            "url": self.shown_url, "connected": self.connected, "outages": self.outages,
            "failed_attempts": self.failures,
            "down_for": (time.monotonic() - self.outage_began
                         if self.outage_began is not None else 0.0), **more}}


def check_outage(outage: str) -> str:
    if outage not in OUTAGE_POLICIES:
        raise ConfigError(f"outage {outage!r} is not one of {OUTAGE_POLICIES}")
    return outage


def _nbytes(payload: Any) -> int:
    if isinstance(payload, dict):
        return sum(memoryview(v).nbytes for v in payload.values())
    return memoryview(payload).nbytes
