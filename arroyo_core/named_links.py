"""The links by the names arroyopy's design gives them, with the constructors it shows.

Each is an :class:`~arroyo_core.link.OutputLink` or :class:`~arroyo_core.link.InputLink`
(the one link step: wire format, ledger, batching), fixed to one ZeroMQ pattern and built
from ``(host, port)`` as well as from an address::

    ZMQPublisher("*", 5555)                 # binds tcp://*:5555, PUSH
    ZMQPublisher("@tcp://*:5555")           # the same, by address
    ZMQListener("127.0.0.1", 5555)          # connects tcp://127.0.0.1:5555, PULL
    ZMQListener.from_socket(socket)         # receives on a PULL or SUB socket you made
    ZMQPubSubPublisher("*", 5556)           # PUB
    ZMQPubSubListener("127.0.0.1", 5556)    # SUB

A publisher binds and a listener connects unless ``bind`` says otherwise (an address keeps
its own ``@``/``>``). The Redis names are the stream links (durable, acknowledged):
``arroyo_core.RedisListener(client_or_url, stream, operator)`` is a
:class:`RedisStreamListener`, ``RedisPublisher`` is :class:`RedisStreamPublisher`, looked
up when first used, as they need redis-py
(:data:`REDIS_NAMES`; docs/from-arroyopy.md has the whole table).
"""

from __future__ import annotations

from typing import Any

import zmq

from .link import InputLink, OutputLink
from .transports.zmq.receiver import socket_endpoint, socket_pattern

__all__ = ["REDIS_NAMES", "ZMQListener", "ZMQPubSubListener", "ZMQPubSubPublisher",
           "ZMQPublisher"]

# The design's Redis names, by the arroyo_core.transports.redis class each stands for.
REDIS_NAMES = {"RedisListener": "RedisListener", "RedisPublisher": "RedisPublisher"}


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
    (``bind=True`` binds), ``ZMQListener(address)`` takes any address, and
    ``ZMQListener(socket)``, ``ZMQListener.from_socket(socket)`` or arroyopy's
    ``ZMQListener(operator, socket)`` receive on a PULL or SUB socket you made, bound or
    connected, with your options (it is closed with the link). The runtime that runs it
    hands what it receives to its operator; an ``operator`` given here is only kept as
    ``self.operator``, as arroyopy's listeners keep theirs."""

    pattern = "pull"

    def __init__(self, host: Any, port: Any = None, *, bind: bool = False,
                 **options: Any) -> None:
        if isinstance(port, zmq.Socket):  # arroyopy's ZMQListener(operator, zmq_socket)
            self.operator = host
            host, port = port, None
        if isinstance(host, zmq.Socket):
            options.update(socket=host, pattern=socket_pattern(host))
            address = socket_endpoint(host)
        else:
            options.setdefault("pattern", self.pattern)
            address = zmq_address(host, port, bind)
        super().__init__(address, **options)

    @classmethod
    def from_socket(cls, socket: zmq.Socket, **options: Any) -> ZMQListener:
        """A listener receiving on ``socket`` (see the class)."""
        return cls(socket, **options)


class ZMQPubSubListener(ZMQListener):
    """A ZeroMQ input, SUB, subscribed to everything (see :class:`ZMQListener`)."""

    pattern = "sub"

