"""One pika connection and channel per link end, and how it outlives the broker going away.

pika's own connection retries are off: a link decides what a failure means (wait, drop,
deliver again). :class:`AmqpConnection` keeps the back-off and says when an outage begins,
while it lasts and when it ends; :class:`ClientSettings` is the plain description (the
options every AMQP sender and receiver takes) it is built from.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from ...address import redact
from ...errors import ConfigError

try:
    import pika
    import pika.exceptions as amqp_errors
    from pika.adapters.blocking_connection import BlockingChannel
except ImportError as exc:  # the [amqp] extra
    raise ConfigError("AMQP links need pika: pip install 'arroyo-stream[amqp]'") from exc

log = logging.getLogger(__name__)
# pika logs every failed connection attempt at ERROR with a traceback: an outage would fill
# the log. AmqpConnection says when one begins and ends; pika speaks only if asked to.
if logging.getLogger("pika").level == logging.NOTSET:
    logging.getLogger("pika").setLevel(logging.CRITICAL)

STILL_DOWN_LOG_S = 30.0  # while an outage lasts, how often to say so again
# Refusals at open that no retry can mend: wrong credentials, vhost or permissions
# (403 ACCESS_REFUSED, 530 NOT_ALLOWED), or a queue declared before with other arguments
# (406 PRECONDITION_FAILED).
CONFIG_REPLY_CODES = (403, 406, 530)
# The broker is not there (or went away): retry with back-off.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    amqp_errors.AMQPConnectionError, amqp_errors.ChannelWrongStateError,
    amqp_errors.ConnectionClosed, OSError)
__all__ = ["BlockingChannel", "amqp_errors"]


@dataclass(frozen=True)
class ClientSettings:
    """How a link end talks to the broker: the options every AMQP sender and receiver takes.

    Parameters
    ----------
    max_backoff
        Longest pause, in seconds, between two attempts to reach the broker.
    connect_timeout
        Seconds before a connection attempt counts as failed.
    heartbeat
        Seconds of silence after which either side declares the connection dead; 0: none.
        By default 30 for a receiver, and 0 for a sender: pika's blocking connection
        answers heartbeats only while it is called, and a sender talks to the broker only
        when it sends, so heartbeats would expire whenever it is idle (between runs); a
        sender finds a dead connection at its next send, and sends again.
    blocked_timeout
        Seconds a publish may stay blocked by a broker resource alarm (memory or disk)
        before the connection counts as lost.
    frame_max
        Largest AMQP frame asked for, in bytes (the broker's ``frame_max``, 128 KiB by
        default, may lower it); a message body is split into frames of this size.
    ssl_ca_certs, ssl_certfile, ssl_keyfile
        For ``amqps://`` (TLS): the CA bundle to trust, and a client certificate.
    """

    max_backoff: float = 2.0
    connect_timeout: float = 2.0
    heartbeat: int | None = None
    blocked_timeout: float = 60.0
    frame_max: int = 131072
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_backoff", "connect_timeout", "blocked_timeout"):
            object.__setattr__(self, name, float(getattr(self, name)))  # "0.5" from a query
        object.__setattr__(self, "frame_max", int(self.frame_max))
        if self.heartbeat is not None:
            object.__setattr__(self, "heartbeat", int(self.heartbeat))

    @classmethod
    def take(cls, options: dict[str, Any]) -> ClientSettings:
        """The settings among ``options``, removed from it (the rest are the link's own)."""
        return cls(**{f.name: options.pop(f.name) for f in fields(cls) if f.name in options})

    def parameters(self, url: str, heartbeat: int = 30) -> pika.URLParameters:
        """pika's connection parameters for ``url`` with these settings (``heartbeat``
        unless they say otherwise)."""
        try:
            params = pika.URLParameters(url)
        except ValueError as exc:
            raise ConfigError(f"{redact(url)} is not an AMQP URL ({exc})") from None
        params.connection_attempts = 1  # (we retry, with our back-off and outage log)
        params.socket_timeout = self.connect_timeout
        params.stack_timeout = self.connect_timeout * 2
        params.heartbeat = heartbeat if self.heartbeat is None else self.heartbeat
        params.blocked_connection_timeout = self.blocked_timeout
        params.frame_max = self.frame_max
        tls = [f.name for f in fields(self) if f.name.startswith("ssl_") and getattr(self, f.name)]
        if tls and not url.startswith("amqps://"):
            raise ConfigError(f"{', '.join(tls)} need an amqps:// (TLS) address")
        if url.startswith("amqps://") and tls:
            context = ssl.create_default_context(cafile=self.ssl_ca_certs)
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            params.ssl_options = pika.SSLOptions(context, server_hostname=params.host)
        return params


class AmqpConnection:
    """One pika BlockingConnection and channel for one URL, from :meth:`open` to
    :meth:`close`, plus Arroyo's reconnect policy. Used from one thread at a time (pika's
    blocking connection is not thread-safe; see :meth:`call_soon`).

    ``prepare(channel)`` runs on every new channel (declare queues, set QoS): what the
    link needs on the broker is made again after a restart. After a failure no connection
    is tried before ``retry_at``; the delay doubles from ``min_backoff`` up to
    ``max_backoff`` and resets once the broker answers. An outage is logged when it
    begins, every 30 s while it lasts, and when it ends; ``outages`` counts them.
    """

    def __init__(self, url: str, link: str, settings: ClientSettings,
                 prepare: Callable[[BlockingChannel], None], heartbeat: int = 30,
                 min_backoff: float = 0.05) -> None:
        self.params = settings.parameters(url, heartbeat)
        self.shown_url = redact(url)
        self.link = link
        self.prepare = prepare
        self.min_backoff = min_backoff
        self.max_backoff = settings.max_backoff
        self.connection: pika.BlockingConnection | None = None
        self.channel: BlockingChannel | None = None
        self.generation = 0  # new channels made: delivery tags are per channel
        self.outages = 0
        self.failures = 0
        self.delay = min_backoff
        self.retry_at = 0.0
        self.outage_began: float | None = None
        self._next_note = 0.0
        self._lock = threading.Lock()  # call_soon from another thread vs. a reconnect

    def open(self) -> None:
        """Connect and prepare: refused credentials, vhost or declarations, and an untrusted
        TLS certificate, are a ConfigError; an unreachable broker is only logged (the link
        keeps trying)."""
        try:
            self._connect()
        except (*OUTAGE_ERRORS, amqp_errors.AMQPChannelError) as exc:
            why = refusal(exc)
            if why is not None:
                raise ConfigError(f"{self.link}: {why}: {_reason(exc)}") from None
            self.down(exc)

    def live(self) -> BlockingChannel | None:
        """The open channel, connecting (and preparing it) if the back-off allows; None
        while the broker is unavailable (the failure is booked)."""
        channel = self.channel
        if channel is not None and channel.is_open:
            return channel
        if time.monotonic() < self.retry_at:
            return None
        try:
            self._connect()
        except (*OUTAGE_ERRORS, amqp_errors.AMQPChannelError) as exc:
            self.down(exc)
            return None
        return self.channel

    def _connect(self) -> None:
        self.lost()
        connection = pika.BlockingConnection(self.params)
        try:
            channel = connection.channel()
            self.prepare(channel)
        except BaseException:
            _quietly(connection.close)
            raise
        with self._lock:
            self.connection, self.channel = connection, channel
            self.generation += 1
        self.up()

    def new_channel(self) -> None:
        """The broker closed the channel (not the connection): open another one."""
        connection = self.connection
        if connection is None or not connection.is_open:
            return
        try:
            channel = connection.channel()
            self.prepare(channel)
        except (*OUTAGE_ERRORS, amqp_errors.AMQPChannelError) as exc:
            self.down(exc)
            return
        with self._lock:
            self.channel = channel
            self.generation += 1

    def wait(self, cancel: threading.Event) -> bool:
        """Sleep until a connection may be tried; False if ``cancel`` was set first."""
        return not cancel.wait(max(0.0, self.retry_at - time.monotonic()))

    def call_soon(self, callback: Callable[[], None]) -> bool:
        """Have the thread using the connection run ``callback`` (thread-safe); False if
        there is no open connection to run it on."""
        with self._lock:
            connection = self.connection
            if connection is None or not connection.is_open:
                return False
            try:
                connection.add_callback_threadsafe(callback)
            except amqp_errors.AMQPError:
                return False
        return True

    def up(self) -> None:
        """The broker answered."""
        if self.outage_began is not None:
            log.warning("%s: the AMQP broker is back after %.1f s (%d failed attempts so far)",
                        self.link, time.monotonic() - self.outage_began, self.failures)
            self.outage_began = None
        self.delay = self.min_backoff

    def down(self, exc: BaseException) -> None:
        """The broker is unavailable: forget the connection, back off before the next try."""
        self.lost()
        now = time.monotonic()
        self.failures += 1
        if self.outage_began is None:
            self.outage_began = now
            self.outages += 1
            self._next_note = now + STILL_DOWN_LOG_S
            log.warning("%s: AMQP broker unavailable (%s: %s); retrying with back-off up to "
                        "%.1f s", self.link, type(exc).__name__, _reason(exc), self.max_backoff)
        elif now >= self._next_note:
            self._next_note = now + STILL_DOWN_LOG_S
            log.warning("%s: AMQP broker still unavailable after %.0f s (%s)", self.link,
                        now - self.outage_began, _reason(exc))
        self.retry_at = now + self.delay
        self.delay = min(self.delay * 2, self.max_backoff)

    def lost(self) -> None:
        """Drop the connection (the broker requeues what it had delivered unacknowledged)."""
        with self._lock:
            connection, self.connection, self.channel = self.connection, None, None
        if connection is not None and connection.is_open:
            _quietly(connection.close)

    def close(self) -> None:
        self.lost()

    @property
    def connected(self) -> bool:
        channel = self.channel
        return channel is not None and channel.is_open

    def status(self, **more: Any) -> dict[str, Any]:
        """The ``amqp`` entry of a link's ledger: this connection's counters and ``more``."""
        return {"amqp": {
            "url": self.shown_url, "connected": self.connected, "outages": self.outages,
            "failed_attempts": self.failures,
            "down_for": (time.monotonic() - self.outage_began
                         if self.outage_began is not None else 0.0), **more}}


CONFIG_ERRORS = (amqp_errors.ProbableAuthenticationError, amqp_errors.AuthenticationError,
                 amqp_errors.ProbableAccessDeniedError, amqp_errors.AMQPChannelError)


def refusal(exc: BaseException) -> str | None:
    """What no retry mends in ``exc``: the broker saying no (credentials, vhost, a
    declaration) or, over TLS, a broker certificate this client does not trust (option
    ``ssl_ca_certs``); None when the broker is only away."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "the broker's TLS certificate is not trusted (option ssl_ca_certs)"
    if isinstance(exc, CONFIG_ERRORS) or (isinstance(exc, amqp_errors.ConnectionClosedByBroker)
                                          and exc.reply_code in CONFIG_REPLY_CODES):
        return "the broker refused"
    return None


def _reason(exc: BaseException) -> str:
    """What went wrong, without the connection parameters pika may print."""
    if isinstance(exc, (amqp_errors.ConnectionClosed, amqp_errors.ChannelClosed)):
        return f"{exc.reply_code} {exc.reply_text}"
    text = str(exc) or type(exc).__name__
    return text.split("\n", 1)[0][:300]


def _quietly(close: Callable[[], Any]) -> None:
    try:
        close()
    except Exception:  # the connection is broken already; nothing to release
        pass
