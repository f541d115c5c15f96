"""The links by the names arroyopy's design gives them, with the constructors it shows.

Each is an :class:`~arroyo_core.link.OutputLink` or :class:`~arroyo_core.link.InputLink`
(the one link step: wire format, ledger, batching), fixed to one ZeroMQ pattern and built
from ``(host, port)`` as well as from an address::

    ZMQPublisher("*", 5555)                 # binds tcp://*:5555, PUSH
    ZMQPublisher("@tcp://*:5555")           # the same, by address
    ZMQListener("127.0.0.1", 5555)          # connects tcp://127.0.0.1:5555, PULL
    ZMQPubSubPublisher("*", 5556)           # PUB
    ZMQPubSubListener("127.0.0.1", 5556)    # SUB

A publisher binds and a listener connects unless ``bind`` says otherwise (an address keeps
its own ``@``/``>``). The Redis names are the stream links (durable, acknowledged):
``arroyo_core.RedisListener`` is :class:`RedisStreamListener`, ``RedisPublisher`` is
:class:`RedisStreamPublisher`, looked up when first used, as they need redis-py
(:data:`REDIS_NAMES`; docs/from-arroyopy.md has the whole table).
"""

from __future__ import annotations

from typing import Any

from .link import InputLink, OutputLink

__all__ = ["REDIS_NAMES", "ZMQListener", "ZMQPubSubListener", "ZMQPubSubPublisher",
           "ZMQPublisher"]

# The design's Redis names, by the arroyo_core.transports.redis class each stands for.
REDIS_NAMES = {"RedisListener": "RedisStreamListener", "RedisPublisher": "RedisStreamPublisher"}


def zmq_address(host_or_address: str, port: int | str | None, bind: bool) -> str:
    """``tcp://host:port`` with ``@`` (bind) or ``>`` (connect); an address as it is."""
    if port is None:
        return host_or_address
    return f"{'@' if bind else '>'}tcp://{host_or_address}:{int(port)}"


class ZMQPublisher(OutputLink):
    """A ZeroMQ output, PUSH: ``ZMQPublisher(host, port)`` binds ``tcp://host:port``
    (``bind=False`` connects), ``ZMQPublisher(address)`` takes any address; further
    keywords are :class:`OutputLink`'s and the transport's options."""

    pattern = "push"

    def __init__(self, host: str, port: int | str | None = None, *, bind: bool = True,
                 **options: Any) -> None:
        options.setdefault("pattern", self.pattern)
        super().__init__(zmq_address(host, port, bind), **options)


class ZMQPubSubPublisher(ZMQPublisher):
    """A ZeroMQ output, PUB: every connected subscriber gets every message (see
    :class:`ZMQPublisher` for the arguments)."""

    pattern = "pub"


class ZMQListener(InputLink):
    """A ZeroMQ input, PULL: ``ZMQListener(host, port)`` connects ``tcp://host:port``
    (``bind=True`` binds), ``ZMQListener(address)`` takes any address. The runtime that
    runs it hands what it receives to its operator (arroyopy's listeners are given the
    operator instead; Arroyo's need not be)."""

    pattern = "pull"

    def __init__(self, host: str, port: int | str | None = None, *, bind: bool = False,
                 **options: Any) -> None:
        options.setdefault("pattern", self.pattern)
        super().__init__(zmq_address(host, port, bind), **options)


class ZMQPubSubListener(ZMQListener):
    """A ZeroMQ input, SUB, subscribed to everything (see :class:`ZMQListener`)."""

    pattern = "sub"

