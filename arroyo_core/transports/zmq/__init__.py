"""ZeroMQ transport for ``tcp://``, ``ipc://`` and ``inproc://`` addresses.

::

    sockets      send/receive helpers, opening a configured socket
    push         PushSender: PUSH, each message to one puller, back-pressure
    pub          PubSender: XPUB, every subscriber gets every message
    receiver     ZmqReceiver: PULL or SUB
    pool         DispatchSender (ROUTER) and WorkerReceiver (DEALER): a pool, with credits
    connections  ConnectionTracker: peers, refused handshakes, dropped connections
    handoff      a close that waits until peers have read everything
    reliable     ReliableSender/ReliableReceiver: PUSH/PULL with acknowledgements back
    curve        CURVE encryption and client allow-lists

The ``pattern`` option picks the socket: ``push`` (default), ``pub`` or ``dispatch`` (to a
pool of workers) for outputs, ``pull`` (default), ``sub`` or ``worker`` (one of a pool) for
inputs.
"""

from __future__ import annotations

from typing import Any

from ...address import Address
from ...arguments import check_arguments
from ...errors import ConfigError
from ...transport import FrameReceiver, FrameSender, Transport
from .pool import DispatchSender, WorkerReceiver
from .pub import PubSender
from .push import PushSender
from .receiver import ZmqReceiver
from .reliable import ReliableReceiver, ReliableSender
from .sockets import zmq_address

SENDERS: dict[str, type[FrameSender]] = {"push": PushSender, "pub": PubSender,
                                         "dispatch": DispatchSender}


class ZmqTransport(Transport):
    def sender(self, address: Address, options: dict[str, Any], link: str) -> FrameSender:
        zmq_address(address)
        pattern = options.pop("pattern", "push")
        if options.pop("reliable", False):
            if pattern != "push":
                raise ConfigError(f"{link}: a reliable output is push, not {pattern!r} "
                                  "(pub and dispatch are not reliable yet)")
            return ReliableSender(address, link, **check_arguments(
                ReliableSender, options, given=("address", "link")))
        if pattern not in SENDERS:
            raise ConfigError(f"output pattern {pattern!r} is not one of {sorted(SENDERS)}")
        cls = SENDERS[pattern]
        return cls(address, link,  # type: ignore[call-arg]
                   **check_arguments(cls, options, given=("address", "link")))

    def receiver(self, address: Address, options: dict[str, Any], link: str) -> FrameReceiver:
        zmq_address(address)
        if options.pop("reliable", False) and options.get("pattern") != "worker":
            if options.get("pattern", "pull") != "pull":
                raise ConfigError(f"{link}: a reliable input is pull or worker, not "
                                  f"{options['pattern']!r} (sub is not reliable yet)")
            return ReliableReceiver(address, link, **check_arguments(
                ReliableReceiver, options, given=("address", "link")))
        if options.get("pattern") == "worker":
            options = {key: value for key, value in options.items() if key != "pattern"}
            return WorkerReceiver(address, link, **check_arguments(
                WorkerReceiver, options, given=("address", "link")))
        return ZmqReceiver(address, link,
                           **check_arguments(ZmqReceiver, options, given=("address", "link")))

    def name(self, address: Address, options: dict[str, Any]) -> str:
        default = "push" if address.bind else "pull"  # a guess only until the link says
        return f"{options.get('pattern', default)} {address}"
