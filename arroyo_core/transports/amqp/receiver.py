"""Consuming from an AMQP broker with manual acknowledgements, sent once the link says the
runtime handled a message, and a prefetch window bounded by the link's memory budget."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from ...budget import parse_bytes
from ...errors import DecodeError
from ...memory import keep_freed_blocks
from ...packed import unpack_frames
from ...transport import FrameReceiver, Frames
from ...wire import DEFAULT_LIMITS
from .connection import OUTAGE_ERRORS, AmqpConnection, BlockingChannel, ClientSettings, amqp_errors
from .topology import Target, flag

log = logging.getLogger(__name__)


class AmqpReceiver(FrameReceiver):
    """Consumes the target's queue; a message stays unacknowledged at the broker until the
    link says it was handled, then is acknowledged (``basic.ack``, several at once when
    they are consecutive).

    The broker delivers at most a window of unacknowledged messages to this receiver
    (RabbitMQ bounds prefetch by count only): before any message came, what
    ``prefetch_bytes`` holds of the largest message the link accepts
    (``max_message_bytes``; 1 by default); from then on, what it holds of the largest
    message so far, at most ``prefetch``. So the bytes delivered and not acknowledged stay
    within ``prefetch_bytes``, except that a message larger than any before may arrive
    behind a window of the old size.
    When the connection is lost, the broker puts the unacknowledged messages back in the
    queue, to be delivered again, to this receiver or another consumer of the queue;
    within this receiver's life the link counts those it handled already as duplicates and
    drops them. Acknowledgements are sent by the receiving thread within moments (pika's
    connection is not thread-safe: the link's thread asks it to).

    Parameters
    ----------
    shared
        Set it on every receiver of a queue that several receivers consume (competing
        consumers): each gets a share of a sender's messages, so its ledger counts no
        gap as missing, and takes a message another receiver died with for new
        (``FrameReceiver.shares_sequence``). Off, a receiver counts every gap, which is
        exact for a queue it consumes alone.
    prefetch
        Most unacknowledged messages the broker sends this receiver.
    prefetch_bytes
        Bytes those may take; ``max_bytes`` (a service's share of its ``memory_limit``)
        caps it.
    poll_ms
        How often an idle receiver looks at its stop flag.
    max_message_bytes
        Checked by the link step (a message arrives whole).
    """

    acknowledges = True

    def __init__(self, url: str, settings: ClientSettings, link: str, target: Target,
                 shared: Any = False, prefetch: int = 256, prefetch_bytes: Any = 64 * 2**20,
                 poll_ms: int = 100,
                 max_bytes: Any = None,
                 max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes) -> None:
        self.target = target
        self.link = link
        self.shares_sequence = flag(shared, "shared")
        self.prefetch_limit = max(1, int(prefetch))
        self.prefetch_bytes = parse_bytes(prefetch_bytes, "prefetch_bytes")
        if max_bytes:
            self.prefetch_bytes = min(self.prefetch_bytes, parse_bytes(max_bytes, "max_bytes"))
        self.prefetch = self._window(int(max_message_bytes))
        self.poll_s = int(poll_ms) / 1000
        self.largest = 0
        self.queue_name = ""
        self.connection = AmqpConnection(url, link, settings, self._prepare)
        self._acks: deque[tuple[int, int]] = deque()  # (channel generation, delivery tag)
        self._done: set[int] = set()  # acknowledged by the link, not yet to the broker
        self._floor = 0  # every tag up to this one was acknowledged to the broker
        self._wake = threading.Event()
        self.acked = 0
        self.redelivered = 0
        self.consumed = 0

    def _prepare(self, channel: BlockingChannel) -> None:
        self.queue_name = self.target.declare_for_receiver(channel)
        channel.basic_qos(prefetch_count=self.prefetch, global_qos=True)
        self._done.clear()  # a new channel numbers its deliveries from 1 again
        self._floor = 0

    def open(self) -> None:
        keep_freed_blocks()  # pika makes new buffers for every message (arroyo_core.memory)
        self.connection.open()

    def receive(self, stop: threading.Event) -> Iterator[tuple[Frames | DecodeError, Any]]:
        connection = self.connection
        while not stop.is_set():
            channel = connection.live()
            if channel is None:
                if not connection.wait(stop):
                    return
                continue
            generation = connection.generation
            try:
                for method, _, body in channel.consume(self.queue_name,
                                                       inactivity_timeout=self.poll_s):
                    self._flush(channel, generation)
                    if stop.is_set():
                        channel.cancel()  # what was sent ahead goes back to the queue
                        return
                    if method is None:
                        continue
                    self.consumed += 1
                    if method.redelivered:
                        self.redelivered += 1
                    if len(body) > self.largest:
                        self._fit_prefetch(channel, len(body))
                    try:
                        frames: Frames | DecodeError = unpack_frames(body)
                    except DecodeError as exc:
                        frames = DecodeError(exc.reason, f"AMQP message: {exc.detail}")
                    yield frames, (generation, method.delivery_tag)
            except (*OUTAGE_ERRORS, amqp_errors.AMQPChannelError) as exc:
                connection.down(exc)  # the broker requeues what this channel held

    def _window(self, nbytes: int) -> int:
        """The prefetch count that keeps messages of ``nbytes`` within the budget."""
        return max(1, min(self.prefetch_limit, self.prefetch_bytes // max(1, nbytes)))

    def _fit_prefetch(self, channel: BlockingChannel, nbytes: int) -> None:
        first = self.largest == 0
        self.largest = nbytes
        count = self._window(nbytes)
        if count < self.prefetch or (first and count != self.prefetch):
            # (it grows only once, from the cautious start to the size actually seen)
            self.prefetch = count
            channel.basic_qos(prefetch_count=count, global_qos=True)
            log.info("%s: prefetch %d messages (%d-byte messages, prefetch_bytes %d)",
                     self.link, count, nbytes, self.prefetch_bytes)

    def acknowledge(self, tokens: list[Any]) -> None:
        self._acks.extend(tokens)  # (a deque: the link's thread appends, ours pops)
        if not self._wake.is_set():
            self._wake.set()
            if not self.connection.call_soon(self._woken):
                self._wake.clear()

    def _woken(self) -> None:
        # Run by pika in the receiving thread.
        self._wake.clear()
        channel = self.connection.channel
        if channel is not None and channel.is_open:
            self._flush(channel, self.connection.generation)

    def _flush(self, channel: BlockingChannel, generation: int) -> None:
        """Acknowledge to the broker every tag up to the highest one below which the link
        acknowledged all (one ``multiple`` ack). Tokens of an earlier channel are dropped:
        the broker has put those messages back already."""
        acks, done = self._acks, self._done
        while acks:
            token_generation, tag = acks.popleft()
            if token_generation == generation:
                done.add(tag)
        floor = self._floor
        while floor + 1 in done:
            floor += 1
            done.discard(floor)
        if floor > self._floor:
            channel.basic_ack(floor, multiple=True)
            self.acked += floor - self._floor
            self._floor = floor

    def close(self) -> None:
        channel = self.connection.channel
        if channel is not None and channel.is_open:
            try:
                self._flush(channel, self.connection.generation)
            except (*OUTAGE_ERRORS, amqp_errors.AMQPChannelError) as exc:
                log.warning("%s: acknowledgements could not be sent (%s); those messages "
                            "will be delivered again", self.link, exc)
        self.connection.close()

    def status(self) -> dict[str, Any]:
        return self.connection.status(
            target=self.target.describe(), queue=self.queue_name, prefetch=self.prefetch,
            consumed=self.consumed, acked=self.acked, redelivered=self.redelivered,
            acks_queued=len(self._acks) + len(self._done))
