"""Shared-memory transport for ``shm://`` addresses: links between services on one host.

Payload buffers travel through a pool of slots in a file of ``/dev/shm`` that the sender
owns; only headers and slot references go over a ZeroMQ control socket
(``shm://host:port`` over tcp, ``shm:///path`` over ipc). The receiver's arrays are views
on the slots, and a service that forwards them to another shm link passes the references
on: one copy of the payload, at the first shm sender, and none after it.

::

    processes  who a process is (pid and start time) and whether it still lives
    pool       the slots in /dev/shm: seats, generations, holds; removing dead owners' pools
    attached   the pools this process reads: views that hold their slot while they live
    control    the control messages (hello, took, bye; a message's slot references)
    sockets    the control socket's address and options
    receivers  a sender's receivers and its messages in flight to them
    sender     ShmSender: PUSH (to one receiver) or PUB (to all)
    receiver   ShmReceiver
    reliable   ReliableShmSender/ReliableShmReceiver: PUSH/PULL, payloads kept in slots
               until acknowledged (``reliable = true``)

What happens on ``kill -9``, what is bounded and what is guaranteed: docs/transports.md.
"""

from __future__ import annotations

from typing import Any

from ...address import Address
from ...arguments import check_arguments
from ...transport import FrameReceiver, FrameSender, Transport
from .receiver import ShmReceiver
from .reliable import ReliableShmReceiver, ReliableShmSender
from .sender import ShmSender
from .sockets import control_address

__all__ = ["ReliableShmReceiver", "ReliableShmSender", "ShmReceiver", "ShmSender",
           "ShmTransport"]


class ShmTransport(Transport):
    def sender(self, address: Address, options: dict[str, Any], link: str) -> FrameSender:
        control_address(address)
        cls = ReliableShmSender if options.pop("reliable", False) else ShmSender
        return cls(address, link,
                   **check_arguments(ShmSender, options, given=("address", "link")))

    def receiver(self, address: Address, options: dict[str, Any], link: str) -> FrameReceiver:
        control_address(address)
        cls = ReliableShmReceiver if options.pop("reliable", False) else ShmReceiver
        return cls(address, link,
                   **check_arguments(ShmReceiver, options, given=("address", "link")))

    def name(self, address: Address, options: dict[str, Any]) -> str:
        default = "push" if address.bind else "pull"
        return f"{options.get('pattern', default)} {address}"
