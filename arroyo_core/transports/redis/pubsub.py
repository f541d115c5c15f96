"""Redis pub/sub: a sender that publishes each message as one value (``PUBLISH``) and a
subscriber. Fire-and-forget: only the clients subscribed at that moment get a message, so
the sender numbers its drops and every loss shows at the receivers as a gap. The value's
layout is :mod:`.framing`'s."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any, cast

import redis

from ...errors import DecodeError
from ...transport import FrameReceiver, Frames, FrameSender, wait_for_count
from ...wire import DEFAULT_LIMITS
from .connection import ClientSettings, RedisConnection, check_outage
from .framing import pack_frames, unpack_frames

log = logging.getLogger(__name__)

WAIT_PAUSE_S = 0.05  # between two PUBSUB NUMSUB while waiting for subscribers


class PubSubSender(FrameSender):
    """Publishes each message on a Redis pub/sub channel (``PUBLISH``): at-most-once.

    Only subscribers connected at that moment get a message; Redis keeps no copy. Losses
    are counted: failed publishes as ``dropped``, publishes nobody heard as ``unheard``,
    and receivers see both as seq gaps (``numbers_drops``). Redis disconnects a
    subscriber whose unread output exceeds ``client-output-buffer-limit pubsub`` (32 MiB
    hard by default): raise it on the server for large frames.

    Parameters
    ----------
    channel
        The channel's name.
    subscribers
        Before a run's Start, wait until at least this many clients subscribe to the
        channel (``PUBSUB NUMSUB``), so that they do not miss the run's beginning.
    peer_timeout
        Seconds to wait for them before starting anyway (0: wait forever).
    outage
        What a send does while Redis is unavailable: ``drop`` (default: a live fan-out
        does not stall for Redis; any message may go, and shows as a gap) or ``wait``
        (retry with back-off until it is back). On shutdown a waiting send is abandoned.
    max_bytes
        Taken so that a service's ``memory_limit`` may cover every link; this sender holds
        one message at a time.
    """

    numbers_drops = True

    def __init__(self, url: str, settings: ClientSettings, link: str, channel: str,
                 subscribers: int = 0, peer_timeout: float = 30.0, outage: str = "drop",
                 max_bytes: Any = None) -> None:
        self.channel = channel
        self.expected_subscribers = int(subscribers)
        self.peer_timeout = float(peer_timeout)
        self.outage = check_outage(outage)
        self.link = link
        self.connection = RedisConnection(url, link, settings)
        self.subscribers = 0  # as PUBSUB NUMSUB last said
        self.unheard = 0
        self._buffer = bytearray()
        self._abandoned = threading.Event()

    def open(self) -> None:
        self.connection.open()

    def wait_for_peers(self) -> None:
        if self.expected_subscribers:
            wait_for_count(self._count_subscribers, self.expected_subscribers,
                           self.peer_timeout, lambda: self._abandoned.wait(WAIT_PAUSE_S),
                           self._abandoned.is_set, self.link, "subscriber(s)")

    def _count_subscribers(self) -> int:
        if self.connection.due():
            self.connection.attempt(self._numsub)
        return self.subscribers

    def _numsub(self, client: redis.Redis) -> None:
        counts = dict(client.pubsub_numsub(self.channel))
        self.subscribers = counts.get(self.channel.encode(), 0)

    def send(self, frames: Frames, droppable: bool) -> str | None:
        packed = pack_frames(frames, self._buffer)
        # grown if this message needed more room; reused next time
        self._buffer = cast(bytearray, packed.obj)  # a view on the bytearray given or made
        return self.connection.send(self._publish, packed, self.outage == "drop",
                                    self._abandoned)

    def _publish(self, client: redis.Redis, value: memoryview) -> None:
        if client.publish(self.channel, value) == 0:
            self.unheard += 1
            if self.unheard == 1:
                log.warning("%s: a message was published with no subscriber listening; "
                            "further ones are only counted ('unheard')", self.link)

    def abandon(self) -> None:
        self._abandoned.set()

    def close(self) -> None:
        self.connection.close()

    def status(self) -> dict[str, Any]:
        return {"unheard": self.unheard,
                **self.connection.status(channel=self.channel, subscribers=self.subscribers)}


class PubSubReceiver(FrameReceiver):
    """Subscribes to a Redis pub/sub channel: receives what is published while it is
    subscribed, and nothing published while it is not (e.g. during a Redis outage). The
    link step counts such losses as seq gaps (``missing``) once messages from the same
    sender arrive again.

    Parameters
    ----------
    channel
        The channel's name.
    block_ms
        How long one read waits for a message; also how often it looks at its stop flag.
    max_message_bytes, max_bytes
        Checked by the link step; a subscriber holds one message at a time (Redis holds
        the rest, up to its ``client-output-buffer-limit pubsub``).
    """

    def __init__(self, url: str, settings: ClientSettings, link: str, channel: str,
                 block_ms: int = 100, max_bytes: Any = None,
                 max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes) -> None:
        self.channel = channel
        self.block_ms = int(block_ms)
        self.link = link
        self.connection = RedisConnection(url, link, settings,
                                          min_socket_timeout=self.block_ms / 1000 + 1.0)
        self._pubsub: Any = None
        self.subscriptions = 0

    def open(self) -> None:
        self.connection.open(self._subscribe)

    def receive(self, stop: threading.Event) -> Iterator[tuple[Frames | DecodeError, Any]]:
        for note in self.connection.reads(self._read, stop, self._connection_lost):
            if note is None or note.get("type") != "message":
                continue
            try:
                frames: Frames | DecodeError = unpack_frames(note["data"])
            except DecodeError as exc:
                frames = DecodeError(exc.reason, f"channel {self.channel!r}: {exc.detail}")
            yield frames, None

    def _subscribe(self, client: redis.Redis) -> None:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel)
        except BaseException:
            pubsub.close()
            raise
        self._pubsub = pubsub
        self.subscriptions += 1
        log.info("%s: subscribed", self.link)

    def _read(self, client: redis.Redis) -> Any:
        if self._pubsub is None:
            self._subscribe(client)
        return self._pubsub.get_message(timeout=self.block_ms / 1000)

    def _connection_lost(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # the connection is broken already; nothing to release
                pass
            self._pubsub = None

    def close(self) -> None:
        self._connection_lost()
        self.connection.close()

    def status(self) -> dict[str, Any]:
        return self.connection.status(channel=self.channel, subscriptions=self.subscriptions)
