"""ZeroMQ transport for ``tcp://``, ``ipc://`` and ``inproc://`` addresses.

::

    sockets      send/receive helpers, opening a configured socket
    push         PushSender: PUSH, each message to one puller, back-pressure
    pub          PubSender: XPUB, every subscriber gets every message
    receiver     ZmqReceiver: PULL or SUB
    connections  ConnectionTracker: peers, refused handshakes, dropped connections
    handoff      a close that waits until peers have read everything
    curve        CURVE encryption and client allow-lists

The ``pattern`` option picks the socket: ``push`` (default) or ``pub`` for outputs,
``pull`` (default) or ``sub`` for inputs.
"""

from __future__ import annotations

from typing import Any

from ...address import Address
from ...arguments import check_arguments
from ...errors import ConfigError
from ...transport import FrameReceiver, FrameSender, Transport
from .pub import PubSender
from .push import PushSender
from .receiver import ZmqReceiver
from .sockets import zmq_address

SENDERS: dict[str, type[PushSender]] = {"push": PushSender, "pub": PubSender}


class ZmqTransport(Transport):
    def sender(self, address: Address, options: dict[str, Any], link: str) -> FrameSender:
        zmq_address(address)
        pattern = options.pop("pattern", "push")
        if pattern not in SENDERS:
            raise ConfigError(f"output pattern {pattern!r} is not one of {sorted(SENDERS)}")
        cls = SENDERS[pattern]
        return cls(address, link, **check_arguments(cls, options, given=("address", "link")))

    def receiver(self, address: Address, options: dict[str, Any], link: str) -> FrameReceiver:
        zmq_address(address)
        return ZmqReceiver(address, link,
                           **check_arguments(ZmqReceiver, options, given=("address", "link")))

    def name(self, address: Address, options: dict[str, Any]) -> str:
        default = "push" if address.bind else "pull"  # a guess only until the link says
        return f"{options.get('pattern', default)} {address}"
