"""What an AMQP address names on the broker (a queue, or an exchange and a routing key) and
the declarations that make it exist: plain data, declared again on every new channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError
from .connection import BlockingChannel

EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def flag(value: Any, name: str) -> bool:
    """A boolean option, from a query string (``durable=true``) or a config file."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigError(f"option {name}: expected true or false, got {value!r}")


@dataclass(frozen=True)
class Target:
    """Where messages go or come from.

    ``queue`` alone: a work queue; messages go through the default exchange straight to it,
    and the receivers that consume it share them (competing consumers). ``exchange``: a
    sender publishes to it with ``routing_key``; a receiver binds a queue to it with
    ``routing_key`` as the binding key (default ``#`` on a topic exchange: everything),
    its own server-named queue that lives as long as its connection, or ``queue`` if given
    (shared by the receivers that name it, kept while they are away). A sender that also
    names ``queue`` declares and binds it too, so nothing is unroutable before the first
    receiver comes. ``durable``: queues and exchanges survive a broker restart, and
    messages are persistent (written to disk).
    """

    queue: str = ""
    exchange: str = ""
    routing_key: str | None = None
    exchange_type: str = "topic"
    durable: bool = False

    @classmethod
    def take(cls, options: dict[str, Any]) -> Target:
        """The target among ``options``, removed from it; ConfigError if it names none."""
        key = options.pop("routing_key", None)
        target = cls(queue=str(options.pop("queue", "") or ""),
                     exchange=str(options.pop("exchange", "") or ""),
                     routing_key=None if key is None else str(key),
                     exchange_type=str(options.pop("exchange_type", "topic")),
                     durable=flag(options.pop("durable", False), "durable"))
        if not target.queue and not target.exchange:
            raise ConfigError("an AMQP address names ?queue=NAME (a work queue) or "
                              "?exchange=NAME[&routing_key=KEY] (publish/subscribe), e.g. "
                              "amqp://host:5672/%2F?queue=frames; it has neither")
        if target.exchange_type not in EXCHANGE_TYPES:
            raise ConfigError(f"exchange_type {target.exchange_type!r} is not one of "
                              f"{', '.join(EXCHANGE_TYPES)}")
        return target

    def describe(self) -> str:
        """How the link's name shows the target."""
        parts = []
        if self.exchange:
            parts.append(f"exchange {self.exchange!r}")
            if self.routing_key:
                parts.append(f"key {self.routing_key!r}")
        if self.queue:
            parts.append(f"queue {self.queue!r}")
        return " ".join(parts)

    @property
    def publish_to(self) -> tuple[str, str]:
        """The exchange and routing key a sender publishes with."""
        if self.exchange:
            return self.exchange, self.routing_key or ""
        return "", self.queue

    @property
    def binding_key(self) -> str:
        if self.routing_key is not None:
            return self.routing_key
        return "#" if self.exchange_type == "topic" else ""

    def declare_for_sender(self, channel: BlockingChannel) -> None:
        if self.exchange:
            self._declare_exchange(channel)
        if self.queue:
            self._declare_queue(channel, self.queue)
            if self.exchange:
                channel.queue_bind(self.queue, self.exchange, routing_key=self.binding_key)

    def declare_for_receiver(self, channel: BlockingChannel) -> str:
        """Declare (and bind) the queue to consume; return its name."""
        if not self.exchange:
            return self._declare_queue(channel, self.queue)
        self._declare_exchange(channel)
        queue = self._declare_queue(channel, self.queue)
        channel.queue_bind(queue, self.exchange, routing_key=self.binding_key)
        return queue

    def _declare_exchange(self, channel: BlockingChannel) -> None:
        channel.exchange_declare(self.exchange, exchange_type=self.exchange_type,
                                 durable=self.durable)

    def _declare_queue(self, channel: BlockingChannel, name: str) -> str:
        if name:
            return str(channel.queue_declare(name, durable=self.durable).method.queue)
        # A private queue of this connection: the broker names it and deletes it with it.
        return str(channel.queue_declare("", exclusive=True).method.queue)
