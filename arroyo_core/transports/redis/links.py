"""The Redis links by their plug-in names, for ``--source``/``--sink`` and config files::

    arroyo publisher --in '>tcp://h:5555' --sink redis-stream -o url=$URL -o stream=frames
    arroyo listener --source redis-stream -o url=$URL -o stream=frames -o group=g ...

Each is the link step (:class:`~arroyo_core.link.InputLink` or
:class:`~arroyo_core.link.OutputLink`) on the Redis address ``url`` with the stream or
channel name as an option; so ``RedisStreamPublisher(url, "frames")`` is
``OutputLink(url + "?stream=frames")``. A redis-py client (plain or asyncio) may stand in for
``url``: the link connects to where it does. ``RedisListener`` and ``RedisPublisher`` are
the stream links by the names arroyopy's design gives them, with its arguments. The other
keyword arguments are those of the link step and of the transport's sender or receiver
(see :mod:`.streams`, :mod:`.pubsub` and :class:`.connection.ClientSettings`).
"""

from __future__ import annotations

from typing import Any

from ...errors import ConfigError
from ...link import InputLink, OutputLink
from .connection import client_url, redact

SCHEMES = ("redis", "rediss")


def _redis_url(url: Any, role: str) -> str:
    """``url``, or the URL of a redis-py client given in its place."""
    if not isinstance(url, str):
        try:
            return client_url(url)
        except ConfigError as exc:
            raise ConfigError(f"{role}: {exc}") from None
    if url.partition("://")[0] not in SCHEMES:
        raise ConfigError(f"{role}: {redact(str(url))} is not a Redis URL: expected "
                          "redis://[[user]:password@]host[:port][/db] or rediss://... (TLS)")
    return url


class RedisStreamPublisher(OutputLink):
    """Appends each message to the Redis stream ``stream`` at ``url`` (``XADD``, capped
    at about ``maxlen`` entries); see :class:`.streams.StreamSender` for the options."""

    def __init__(self, url: str, stream: str, **options: Any) -> None:
        super().__init__(_redis_url(url, "redis-stream output"), stream=stream, **options)


class RedisStreamListener(InputLink):
    """Reads the Redis stream ``stream`` at ``url`` as consumer ``consumer`` of ``group``,
    at-least-once (see :class:`.streams.StreamReceiver` for the options)."""

    def __init__(self, url: str, stream: str, group: str = "arroyo", **options: Any) -> None:
        super().__init__(_redis_url(url, "redis-stream input"), stream=stream, group=group,
                         **options)


class RedisPubSubPublisher(OutputLink):
    """Publishes each message on the Redis channel ``channel`` at ``url``, at-most-once
    (see :class:`.pubsub.PubSubSender` for the options)."""

    def __init__(self, url: str, channel: str, **options: Any) -> None:
        super().__init__(_redis_url(url, "redis-pubsub output"), channel=channel, **options)


class RedisPubSubListener(InputLink):
    """Subscribes to the Redis channel ``channel`` at ``url`` (see
    :class:`.pubsub.PubSubReceiver` for the options)."""

    def __init__(self, url: str, channel: str, **options: Any) -> None:
        super().__init__(_redis_url(url, "redis-pubsub input"), channel=channel, **options)


class RedisListener(RedisStreamListener):
    """The Redis stream input by arroyopy's name and arguments:
    ``RedisListener(client_or_url, stream, operator)``. The runtime that runs it hands
    what it receives to its operator; ``operator`` is only kept, as arroyopy keeps it."""

    def __init__(self, url: Any, stream: str, operator: Any = None, **options: Any) -> None:
        self.operator = operator
        super().__init__(url, stream, **options)


RedisPublisher = RedisStreamPublisher  # arroyopy's name; its arguments are the same
