"""The PUB sender: every subscriber gets every message, and none is dropped unseen.

PUB is an XPUB so that subscriptions are seen (no slow-joiner loss) and so that, with
XPUB_NODROP, a full subscriber makes send fail instead of dropping the message unseen.
A message sent while fewer than the expected subscribers are there would reach only some
of them, or none (XPUB discards it), so a send then waits for them, as a PUSH with no
peer does: at a run's start, after this sender restarted mid-run, and when every
subscriber went away.

A subscriber is one that subscribes to the topic (or to everything). A subscription to a
shorter prefix of the topic is a *tap* (``arroyo tap``, ``arroyo record --tap``): it gets
every message, but is never waited for nor counted, so attaching one cannot make a run
start without its real subscribers. Like any subscriber, a tap that falls behind by its
high-water mark holds sends back (XPUB_NODROP), so a tap must read as fast as the stream.
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
        How many subscribers are expected. Every send waits until that many have
        subscribed (and ``peers`` are connected): before a run's Start, so that a late
        joiner misses nothing, and in the middle of a run, after this sender restarted or
        when subscribers went away, so that nothing is sent into the void. The wait is
        back-pressure, bounded like any other: with ``overflow="drop-newest"`` an event is
        dropped (counted, ``no subscriber``) instead of waiting; after ``peer_timeout``
        seconds (0: never) the sender stops waiting and sends to whoever is there
        (dropping, counted, the events nobody would get) until they are all back.
        0: never wait.
    """

    socket_type = zmq.XPUB
    pattern = "pub"

    def __init__(self, address: Address, link: str, topic: str = "arroyo",
                 subscribers: int = 1, **options: Any) -> None:
        self.topic = str(topic).encode()
        self.expected_subscribers = int(subscribers)
        self.subscribers = 0
        self._gave_up = False  # peer_timeout ran out: send to whoever is there, until all back
        self.held = 0  # sends that waited for subscribers
        super().__init__(address, link, **options)
        self.options.update({zmq.XPUB_NODROP: 1, zmq.XPUB_VERBOSE: 1, zmq.XPUB_VERBOSER: 1})

    def budget_peers(self) -> int:
        return max(self.expected_peers, self.expected_subscribers)

    def wait_for_peers(self) -> None:
        if self.expected_subscribers:
            self._read_subscriptions()
            if self._missing():
                self._wait("starting the run")
        super().wait_for_peers()  # peers, and attaching them before the Start

    def send(self, frames: Frames, droppable: bool) -> str | None:
        if self.expected_subscribers:
            self._read_subscriptions()
            if self._missing():
                dropped = self._hold(droppable)
                if dropped is not None:
                    return dropped
        frames.insert(0, self.topic)
        return super().send(frames, droppable)

    def _present(self) -> int:
        """Subscribers there now. Each is a connection of its own, and the socket monitor
        sees one go a little before the XPUB socket hands us its unsubscription: the fewer
        of the two counts, so that nothing is sent to a subscriber already gone."""
        return min(self.subscribers, self.tracker.count)

    def _missing(self) -> bool:
        """Fewer subscribers (or peers) than expected are there."""
        return (self._present() < self.expected_subscribers
                or self.tracker.count < self.expected_peers)

    def _hold(self, droppable: bool) -> str | None:
        """Wait for the expected subscribers before a send (see the class docstring);
        the reason to drop the message instead, or None to send it."""
        if self.overflow == "drop-newest" and droppable:
            return "no subscriber"
        if not self._gave_up:
            self.held += 1  # once per outage: a wait ends when they are all back
            log.info("%s: %d of %d subscriber(s) there; holding sends until they are back",
                     self.link, self._present(), self.expected_subscribers)
            self._wait("sending on")
        if self._abandoned:
            return "no peer took it before shutdown"
        if droppable and not self._present():
            return "no subscriber"  # XPUB would discard it, unseen
        return None

    def _wait(self, before: str) -> None:
        """Wait for the expected subscribers, then the expected peers (each at most
        ``peer_timeout``); past the timeout, stop waiting until they are all back."""
        socket = self.socket
        assert socket is not None

        def pause() -> None:
            if socket.poll(POLL_MS, zmq.POLLIN):
                self._read_subscriptions()

        def cancelled() -> bool:
            return self._abandoned

        there = wait_for_count(self._present, self.expected_subscribers,
                               self.peer_timeout, pause, cancelled, self.link,
                               "subscriber(s)", before)
        if there and self.expected_peers:
            there = self.tracker.wait_for(self.expected_peers, self.peer_timeout, cancelled)
        self._gave_up = not there and not self._abandoned

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
            if note[1:] not in (b"", self.topic):
                # Not ours, or a tap's (a shorter prefix of our topic, e.g. `arroyo tap`):
                # it gets every message, but no send waits for it.
                continue
            change = 1 if note[:1] == b"\x01" else -1
            self.subscribers = max(0, self.subscribers + change)
            if self.subscribers >= self.expected_subscribers:
                self._gave_up = False  # all back: wait again the next time they go
            log.info("%s: subscriber %s, now %d", self.link,
                     "joined" if change > 0 else "left", self.subscribers)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "subscribers": self.subscribers, "held": self.held}
