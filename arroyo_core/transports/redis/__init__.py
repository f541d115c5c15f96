"""Redis transport for ``redis://`` and ``rediss://`` (TLS) addresses: Arroyo messages over
Redis Streams (durable, acknowledged) or Redis pub/sub (fire-and-forget fan-out), with the
same header and array bytes as on ZeroMQ.

::

    redis://[user:password@]host:port/db?stream=NAME[&group=G&consumer=C]   a stream
    redis://[user:password@]host:port/db?channel=NAME                        pub/sub

An address names exactly one of ``stream`` and ``channel``; any key of the query may come
as a link option instead (``-o stream=frames``). The link's name in logs and the ledger
hides the password. Redis links always connect (``@`` and ``>`` make no difference).

::

    connection   RedisConnection: client options, reconnect with back-off, outage logs
    streams      StreamSender (XADD MAXLEN ~), StreamReceiver (XREADGROUP, XACK)
    pubsub       PubSubSender (PUBLISH), PubSubReceiver (SUBSCRIBE)
    framing      how the frames sit in a stream entry or a pub/sub value
    links        the plug-in names: redis-stream and redis-pubsub listeners and publishers

Decoding, numbering, the loss ledger, duplicates and the delivered/handled bookkeeping are
the link step's (:mod:`arroyo_core.link`), as for every transport. When Redis goes away,
every link retries with exponential back-off (bounded by ``max_backoff``), logs the outage
when it begins and ends, and counts what it could not deliver; none of them raises out of
a send or a receive for it. A malformed entry is counted by reason, logged once and
acknowledged out of the way.

Delivery guarantees, in one place:

- Stream: at-least-once from XADD to the receiving service's runtime. An entry is
  acknowledged (XACK) only after the runtime reports it handled (``Listener.handled``),
  i.e. processed and handed to every publisher; a receiver restarted under the same
  consumer name reads its pending entries first. Duplicates carry the sender's
  ``src``/``seq`` twice and are dropped by the ledger within one receiver's life; after a
  restart, the entries that were handled but not yet acknowledged are delivered again.
  Entries trimmed by MAXLEN before the group read them show as seq gaps (``missing``).
  "Handled" means handed to the publishers: messages a ZeroMQ output still queues in the
  process (up to its ``hwm``) are lost with it if it is killed, acknowledged or not.
- Pub/sub: at-most-once. Every message a sender is asked to send takes a sequence number,
  sent or not, so a subscriber sees every loss, its own or the sender's, as a gap; the
  sender counts failed publishes (``dropped``) and publishes nobody heard (``unheard``).
"""

from __future__ import annotations

from typing import Any

from ...address import Address
from ...arguments import check_arguments
from ...errors import ConfigError
from ...transport import FrameReceiver, FrameSender, Transport
from .connection import ClientSettings, redact
from .links import (
    RedisListener,
    RedisPublisher,
    RedisPubSubListener,
    RedisPubSubPublisher,
    RedisStreamListener,
    RedisStreamPublisher,
)
from .pubsub import PubSubReceiver, PubSubSender
from .streams import StreamReceiver, StreamSender

__all__ = ["RedisListener", "RedisPubSubListener", "RedisPubSubPublisher", "RedisPublisher",
           "RedisStreamListener", "RedisStreamPublisher", "RedisTransport"]

TARGETS = ("stream", "channel")
SENDERS: dict[str, type[StreamSender | PubSubSender]] = {
    "stream": StreamSender, "channel": PubSubSender}
RECEIVERS: dict[str, type[StreamReceiver | PubSubReceiver]] = {
    "stream": StreamReceiver, "channel": PubSubReceiver}


class RedisTransport(Transport):
    """Makes Redis stream or pub/sub senders and receivers (see the module docstring)."""

    def sender(self, address: Address, options: dict[str, Any], link: str) -> FrameSender:
        kind, name, settings = _split(options, link)
        return _make(SENDERS[kind], address, settings, link, name, options)

    def receiver(self, address: Address, options: dict[str, Any], link: str) -> FrameReceiver:
        kind, name, settings = _split(options, link)
        return _make(RECEIVERS[kind], address, settings, link, name, options)

    def name(self, address: Address, options: dict[str, Any]) -> str:
        target = " ".join(f"{key} {str(options[key])!r}" for key in ("stream", "group", "channel")
                          if options.get(key))
        url = redact(address.base)
        return f"{target} at {url}" if target else url


def _make(cls: type[Any], address: Address, settings: ClientSettings, link: str, name: str,
          options: dict[str, Any]) -> Any:
    try:
        options = check_arguments(cls, options, given=("url", "settings", "link", *TARGETS))
        return cls(address.base, settings, link, name, **options)
    except (ValueError, ConfigError) as exc:  # e.g. a number that is not one, from the query
        raise ConfigError(f"{link}: {exc}") from None


def _split(options: dict[str, Any], link: str) -> tuple[str, str, ClientSettings]:
    """Take the target (``stream`` or ``channel``) and the client settings out of
    ``options``; what is left is for the sender or receiver."""
    targets = {key: options.pop(key) for key in TARGETS if key in options}
    given = [key for key, value in targets.items() if value]
    if len(given) != 1:
        raise ConfigError(
            f"{link}: a Redis address names exactly one of ?stream=NAME (a durable stream) "
            f"and ?channel=NAME (pub/sub), e.g. redis://host:6379/0?stream=frames; it has "
            f"{' and '.join(given) or 'neither'}")
    try:
        settings = ClientSettings.take(options)
    except ValueError as exc:
        raise ConfigError(f"{link}: {exc}") from None
    return given[0], str(targets[given[0]]), settings
