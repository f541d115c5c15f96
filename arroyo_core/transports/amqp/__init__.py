"""AMQP 0-9-1 transport (RabbitMQ) for ``amqp://`` and ``amqps://`` (TLS) addresses, through
pika, with the same header and array bytes as on ZeroMQ.

::

    amqp://[user:password@]host[:port][/vhost]?queue=NAME                 a work queue
    amqp://[user:password@]host[:port][/vhost]?exchange=NAME[&routing_key=KEY][&queue=NAME]

A ``queue`` address is a work queue: every receiver of it takes a share (competing
consumers). An ``exchange`` address publishes with ``routing_key``; each receiver binds a
queue of its own to it (every one gets every message), or the named ``queue`` (shared). The
vhost is the path, URL-quoted (``/%2F`` is ``/``, the default). Any key of the query may
come as a link option instead (``-o queue=frames``); the link's name in logs and the ledger
hides the password. AMQP links always connect (``@`` and ``>`` make no difference).

::

    connection   AmqpConnection: pika parameters, reconnect with back-off, outage logs
    topology     Target: the queue or exchange an address names, and its declarations
    sender       AmqpSender: publish with confirms, mandatory; size limit
    receiver     AmqpReceiver: consume, acknowledge after handling, bounded prefetch

Each message is one AMQP message whose body is the packed frames (docs/protocol.md,
section 8.2 and 11). Delivery, in one place:

- At-least-once from the sender's publish to the receiving runtime: a send returns once
  the broker confirmed the message (``confirm``, on by default; for a ``durable`` target
  the broker confirms persistent messages once on disk); a receiver acknowledges a message
  only once its runtime handled it. Unacknowledged messages go back to the queue when a
  receiver's connection ends, killed or not, and are delivered again; within one
  receiver's life the ledger counts the copies as duplicates and drops them.
- Competing consumers (``shared=true`` on each receiver of a queue several consume): a
  receiver's ledger counts no gap as missing (the others' share) and takes a message that
  another receiver died with for new (``FrameReceiver.shares_sequence``).
- ``durable``: queues and exchanges survive a broker restart, and so do their confirmed
  messages. Without it a restart empties the queues: the receivers count the loss as
  ``missing``. A receiver's own server-named queue (an exchange address without
  ``queue``) exists only while it is connected: what is published while it is away is
  not for it (at-most-once, like Redis pub/sub).
- When the broker goes away, every link retries with exponential back-off (bounded by
  ``max_backoff``), logs the outage when it begins, while it lasts and when it ends, and
  counts it (``amqp.outages``).
- Sizes: a body is split into frames of ``frame_max`` (negotiated, 128 KiB by default) by
  pika, so only the broker's ``max_message_size`` (128 MiB by default in RabbitMQ, at most
  512 MiB) bounds a message: a sender refuses a larger one (option ``max_message_size``),
  and one the broker refuses is counted as dropped with the broker's reason.
"""

from __future__ import annotations

from typing import Any

from ...address import Address
from ...arguments import check_arguments
from ...errors import ConfigError
from ...transport import FrameReceiver, FrameSender, Transport
from .connection import ClientSettings, redact
from .receiver import AmqpReceiver
from .sender import AmqpSender
from .topology import Target

__all__ = ["AmqpReceiver", "AmqpSender", "AmqpTransport"]


class AmqpTransport(Transport):
    """Makes AMQP senders and receivers (see the module docstring)."""

    def sender(self, address: Address, options: dict[str, Any], link: str) -> FrameSender:
        return _make(AmqpSender, address, options, link)

    def receiver(self, address: Address, options: dict[str, Any], link: str) -> FrameReceiver:
        return _make(AmqpReceiver, address, options, link)

    def name(self, address: Address, options: dict[str, Any]) -> str:
        url = redact(address.base)
        try:
            target = Target.take(dict(options)).describe()
        except ConfigError:
            return url
        return f"{target} at {url}"


def _make(cls: type[Any], address: Address, options: dict[str, Any], link: str) -> Any:
    options = dict(options)
    try:
        target = Target.take(options)
        settings = ClientSettings.take(options)
        options = check_arguments(cls, options, given=("url", "settings", "link", "target"))
        return cls(address.base, settings, link, target, **options)
    except (ValueError, ConfigError) as exc:  # e.g. a number that is not one, from the query
        raise ConfigError(f"{link}: {exc}") from None
