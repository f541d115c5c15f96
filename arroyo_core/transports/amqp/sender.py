"""Publishing to an AMQP broker: one message per Arroyo message, its body the packed frames
(:mod:`arroyo_core.packed`), confirmed by the broker before the send returns."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ...budget import parse_bytes
from ...errors import ConfigError
from ...memory import keep_freed_blocks
from ...packed import pack_bytes
from ...transport import Frames, FrameSender
from .connection import OUTAGE_ERRORS, AmqpConnection, ClientSettings, amqp_errors, pika
from .topology import Target, flag

log = logging.getLogger(__name__)

OUTAGE_POLICIES = ("wait", "drop")
# RabbitMQ's default max_message_size (3.8 and later); its hard ceiling is 512 MiB.
BROKER_MAX_MESSAGE_SIZE = 128 * 2**20


class AmqpSender(FrameSender):
    """Publishes each message to the target's exchange and routing key, with publisher
    confirms: a send returns once the broker has taken the message (written it to disk
    first, for a durable target), or says why it did not.

    Parameters
    ----------
    confirm
        Wait for the broker's confirmation of each message (default). Off, a message the
        broker drops (a restart, an alarm) is lost without a trace at the sender.
    outage
        What a send does while the broker is unavailable: ``wait`` (default) retries with
        back-off until it is back, so nothing is lost and the chain slows down; ``drop``
        counts the event as dropped and returns at once (a Start or Stop still waits: a
        lost one corrupts the run). On shutdown a waiting send is abandoned (counted).
        A message whose confirmation was lost with the connection is sent again: the
        receivers' ledgers count the copy as a duplicate and drop it.
    max_message_size
        The broker's ``max_message_size`` (RabbitMQ: 128 MiB unless configured): a larger
        message is refused here, counted and logged once with the sizes, never sent. A
        broker that refuses one anyway (a lower limit than this) is counted the same way.
    max_bytes
        Taken so that a service's ``memory_limit`` may cover every link; this sender holds
        one message at a time (the broker holds the rest).
    """

    def __init__(self, url: str, settings: ClientSettings, link: str, target: Target,
                 confirm: Any = True, outage: str = "wait",
                 max_message_size: Any = BROKER_MAX_MESSAGE_SIZE, max_bytes: Any = None) -> None:
        if outage not in OUTAGE_POLICIES:
            raise ConfigError(f"outage {outage!r} is not one of {OUTAGE_POLICIES}")
        self.target = target
        self.confirm = flag(confirm, "confirm")
        self.outage = outage
        self.max_message_size = parse_bytes(max_message_size, "max_message_size")
        self.link = link
        self.exchange, self.routing_key = target.publish_to
        self.properties = pika.BasicProperties(delivery_mode=2 if target.durable else None)
        self.connection = AmqpConnection(url, link, settings, self._prepare, heartbeat=0)
        self.unroutable = 0
        self.refused = 0
        self._refusals: set[str] = set()
        self._abandoned = threading.Event()

    def _prepare(self, channel: Any) -> None:
        self.target.declare_for_sender(channel)
        if self.confirm:
            channel.confirm_delivery()

    def open(self) -> None:
        keep_freed_blocks()  # pika makes new buffers for every message (arroyo_core.memory)
        self.connection.open()

    def send(self, frames: Frames, droppable: bool) -> str | None:
        body = pack_bytes(frames)
        if len(body) > self.max_message_size:
            return self._refuse(f"larger than max_message_size ({self.max_message_size} bytes)",
                                f"a {len(body)}-byte message is larger than the broker's "
                                f"max_message_size, {self.max_message_size} bytes (option "
                                "max_message_size; RabbitMQ's own setting of that name)")
        drop = self.outage == "drop" and droppable
        connection = self.connection
        while True:
            channel = connection.live()
            if channel is None:
                if drop:
                    return "broker unavailable"
                if not connection.wait(self._abandoned):
                    return "broker unavailable until shutdown"
                continue
            try:
                channel.basic_publish(self.exchange, self.routing_key, body, self.properties,
                                      mandatory=True)
            except amqp_errors.UnroutableError:
                return self._unroutable()
            except amqp_errors.NackError:
                return self._refuse("nacked by the broker", f"the broker refused (nack) a "
                                    f"{len(body)}-byte message")
            except amqp_errors.ChannelClosedByBroker as exc:
                connection.new_channel()
                return self._refuse(f"refused by the broker ({exc.reply_code} "
                                    f"{exc.reply_text.split(' ', 1)[0]})",
                                    f"the broker refused a {len(body)}-byte message: "
                                    f"{exc.reply_code} {exc.reply_text}")
            except OUTAGE_ERRORS as exc:
                connection.down(exc)
                continue
            return None

    def _unroutable(self) -> str:
        self.unroutable += 1
        if self.unroutable == 1:
            log.warning("%s: a message was unroutable (no queue is bound to the exchange with "
                        "a matching key); further ones are only counted ('unroutable')",
                        self.link)
        return "unroutable"

    def _refuse(self, reason: str, detail: str) -> str:
        self.refused += 1
        if reason not in self._refusals:
            self._refusals.add(reason)
            log.error("%s: %s; not sent (further ones are only counted)", self.link, detail)
        return reason

    def abandon(self) -> None:
        self._abandoned.set()

    def close(self) -> None:
        self.connection.close()

    def status(self) -> dict[str, Any]:
        return self.connection.status(target=self.target.describe(), confirm=self.confirm,
                                      unroutable=self.unroutable, refused=self.refused)
