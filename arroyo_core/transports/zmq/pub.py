"""The PUB sender: every subscriber gets every message, and none is dropped unseen.

PUB is an XPUB so that subscriptions are seen (no slow-joiner loss) and so that, with
XPUB_NODROP, a full subscriber makes send fail instead of dropping the message unseen.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from ...address import Address
from ...transport import Frames, wait_for_count
from .push import PushSender
from .sockets import POLL_MS

log = logging.getLogger(__name__)


class PubSender(PushSender):
    """Sends on an XPUB socket; the options of :class:`.push.PushSender`, and:

    Parameters
    ----------
    topic
        First frame of every message.
    subscribers
        How many subscribers must have subscribed before a run starts, so a late joiner
        does not miss the first messages (``peers`` is waited for in addition).
    """

    socket_type = zmq.XPUB
    pattern = "pub"

    def __init__(self, address: Address, link: str, topic: str = "arroyo",
                 subscribers: int = 1, **options: Any) -> None:
        self.topic = str(topic).encode()
        self.expected_subscribers = int(subscribers)
        self.subscribers = 0
        super().__init__(address, link, **options)
        self.options.update({zmq.XPUB_NODROP: 1, zmq.XPUB_VERBOSE: 1, zmq.XPUB_VERBOSER: 1})

    def budget_peers(self) -> int:
        return max(self.expected_peers, self.expected_subscribers)

    def wait_for_peers(self) -> None:
        if self.expected_subscribers:
            self._read_subscriptions()
            if self.subscribers < self.expected_subscribers:
                self._wait_for_subscribers()
        super().wait_for_peers()

    def send(self, frames: Frames, droppable: bool) -> str | None:
        if self.expected_subscribers:
            self._read_subscriptions()
            if not self.subscribers and droppable:
                return "no subscriber"  # XPUB would discard it, unseen
        frames.insert(0, self.topic)
        return super().send(frames, droppable)

    def waiting(self) -> None:
        if self.expected_subscribers:
            self._read_subscriptions()

    def _read_subscriptions(self) -> None:
        """Count (un)subscriptions to our topic that the XPUB socket has queued."""
        assert self.socket is not None
        while True:
            try:
                note = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if note[1:] and not self.topic.startswith(note[1:]):
                continue  # a subscription that does not match our messages
            change = 1 if note[:1] == b"\x01" else -1
            self.subscribers = max(0, self.subscribers + change)
            log.info("%s: subscriber %s, now %d", self.link,
                     "joined" if change > 0 else "left", self.subscribers)

    def _wait_for_subscribers(self) -> None:
        socket = self.socket
        assert socket is not None

        def pause() -> None:
            if socket.poll(POLL_MS, zmq.POLLIN):
                self._read_subscriptions()

        wait_for_count(lambda: self.subscribers, self.expected_subscribers, self.peer_timeout,
                       pause, lambda: self._abandoned, self.link, "subscriber(s)")

    def status(self) -> dict[str, Any]:
        return {**super().status(), "subscribers": self.subscribers}
