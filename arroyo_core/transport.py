"""What a transport is: something that moves multipart frames, and nothing else.

A transport is found by the scheme of a link's address (``tcp``, ``ipc``, ``redis``, ...)
in the ``arroyo.transports`` entry-point group, exactly as a third-party one would be::

    [project.entry-points."arroyo.transports"]
    rdma = "my_package.rdma:RdmaTransport"

It makes a :class:`FrameSender` for an output address and a :class:`FrameReceiver` for an
input one. Encoding, numbering, loss counting, byte counting, lag and limits are the link
step's (:mod:`arroyo_core.link`), written once for every transport; a transport only
moves bytes, and says when it could not.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from . import registry
from .address import Address
from .errors import ConfigError, DecodeError

Frames = list[Any]  # a header frame, then one buffer per array (docs/protocol.md)
# When a link still waiting for something says so: after 5 s, 10 s later, 30 s later,
# then every 60 s; often at first, when someone is watching a start, then less often.
WAIT_LOG_SCHEDULE = (5.0, 10.0, 30.0, 60.0)

SENDER_ID_BYTES = 4  # random bytes in a sender id, after the process id

log = logging.getLogger(__name__)


class FrameSender(ABC):
    """Sends whole multipart messages to one output address.

    ``numbers_drops``: if true, a message this sender drops still takes a sequence number,
    so receivers see the loss as a gap (for transports where the receiver may miss
    messages the sender does not know of, like pub/sub); if false, drops are counted only
    at the sender.

    ``batch``: how many small Events an output link gathers into one message by default
    over this transport (:mod:`arroyo_core.batch`); 0: each goes alone unless the link's
    ``batch`` option says otherwise.

    ``bound``: once open, the address this end bound, with a port the system chose
    filled in (``tcp://127.0.0.1:40123`` for ``@tcp://127.0.0.1:*``), for the ledger and
    the service's READY line; None for an end that connects, or a transport that does not
    say.
    """

    numbers_drops = False
    batch = 0
    bound: str | None = None

    def open(self) -> None:
        """Bind, connect or open; raise ConfigError naming the address on failure."""

    @abstractmethod
    def send(self, frames: Frames, droppable: bool) -> str | None:
        """Send one message. Return None once sent, or the reason it was dropped (only a
        ``droppable`` message may be dropped by a policy, unless the sender
        ``numbers_drops``: receivers then see any loss; any may be dropped when the sender
        was abandoned at shutdown, or when the other side refused it)."""

    def wait_for_peers(self) -> None:
        """Block until the peers a run should start with are there (before a Start)."""

    def run_state(self, in_run: bool) -> None:
        """Told when a run starts (True) and after its Stop is sent (False), so that a peer
        leaving between runs can be told from one lost mid-run."""

    def abandon(self) -> None:
        """Give up on sends still waiting for a peer; safe to call from any thread."""

    def close(self) -> None:
        """Flush what was sent (within the transport's linger) and release everything."""

    def status(self) -> dict[str, Any]:
        """Transport-specific counters (connections, subscribers, budget) for the ledger."""
        return {}


class PeerSender(FrameSender):
    """A sender that addresses each peer itself and hears how much each can take (its
    credit): what the dispatch link (:mod:`arroyo_core.dispatch`) drives to spread a run
    over a pool of workers. Which peer gets what is the link's choice, never the
    transport's; :meth:`send` without a peer only says so.

    ``expected_peers`` and ``peer_timeout``: how many peers a run waits for before its
    Start, and for how long (0: forever). ``max_credit``: the most one peer may be
    credited with. ``abandoned``: set by :meth:`abandon`. ``linger_s``: how long the
    link's close waits for peers to finish what they were sent.
    """

    expected_peers = 0
    peer_timeout = 0.0
    max_credit = 1 << 30
    abandoned = False
    linger_s = 10.0  # how long a close waits for peers to finish what they were sent

    def waiting_reason(self) -> str:
        """Why no peer takes messages, as far as the transport can tell (for a log line)."""
        return "no worker has joined"

    def abandon(self) -> None:
        self.abandoned = True

    @abstractmethod
    def send_to(self, peer: bytes, frames: Frames) -> bool:
        """Send one message to ``peer``; False if that peer is gone (nothing was sent)."""

    @abstractmethod
    def credits(self, timeout: float) -> list[tuple[bytes, bool, int]]:
        """``(peer, hello, n)`` for what peers said, waiting up to ``timeout`` seconds for
        the first: ``hello`` says a peer (new, or connected again) can take ``n`` messages
        now; else it finished ``n`` more."""

    @abstractmethod
    def probe(self, peer: bytes) -> bool:
        """Whether ``peer`` is still connected (the peer ignores what this sends)."""

    def send(self, frames: Frames, droppable: bool) -> str | None:
        return "no worker chosen (a pool's sender is driven by the dispatch link)"


class AckedSender(FrameSender):
    """A sender for reliable links (:mod:`arroyo_core.reliable`): it hears its receiver.

    The link keeps every message until acknowledged and decides what to send again;
    the transport only offers a message now and reports what the receiver said: ``(ack,
    src, seq)`` (finished everything of sender ``src`` up to ``seq``) or ``(hello, src,
    seq)`` (has everything before ``seq``: send the rest; ``src`` empty: it knows
    nothing of us). A transport that learns itself that its receiver may have lost what
    was sent (it connected again) reports ``(hello, "", 0)``. ``abandoned``: set once
    :meth:`abandon` was called (the link stops waiting for acknowledgements then).
    """

    abandoned = False

    @abstractmethod
    def offer(self, frames: Frames, wait: bool) -> bool:
        """Send one message now if the receiver can take it (waiting at most a poll
        interval if ``wait``); False if not sent (no receiver, or its queue is full)."""

    @abstractmethod
    def replies(self, timeout: float, room: bool = False) -> list[tuple[str, str, int]]:
        """What the receiver said since the last call, waiting up to ``timeout`` s for it
        to say something or, with ``room``, for room for another message (what it says
        may be nothing then)."""

    def keep(self, frames: Frames) -> Frames | None:
        """The frames the link's window is to hold for this message until it is
        acknowledged (the same, or the payload moved where the transport can send it
        again from, e.g. a shared-memory slot); None: no room for it now (the window is
        full: the link waits, or drops by its overflow policy)."""
        return frames

    def send(self, frames: Frames, droppable: bool) -> str | None:
        return "a reliable sender is driven by its link (offer)"


class FrameReceiver(ABC):
    """Receives whole multipart messages from one input address.

    ``acknowledges``: if true, the transport keeps what it delivered until
    :meth:`acknowledge` is called with its token (a durable queue such as a Redis stream).
    ``shares``: if true, this receiver is one worker of a pool: it gets a share of each run,
    and a Stop's ``pool`` metadata is its own share (:mod:`arroyo_core.fanin`).
    ``shares_sequence``: if true, this receiver gets a share of each sender's messages
    (a work queue's competing consumers): its ledger counts no gap as missing, and a
    message as a duplicate only if this receiver saw its number before.
    ``bound``: as :attr:`FrameSender.bound`.
    """

    acknowledges = False
    shares = False
    shares_sequence = False
    bound: str | None = None
    # Reliable links: called from the receiving thread each time a connection is up
    # (new, or again), so the link can say hello (:meth:`answer`).
    on_connect: Callable[[], None] | None = None

    def open(self) -> None:
        """Bind, connect or open; raise ConfigError naming the address on failure."""

    @abstractmethod
    def receive(self, stop: threading.Event) -> Iterator[tuple[Frames | DecodeError, Any]]:
        """Yield ``(frames, token)`` for each message until ``stop`` is set; survive outages
        of the other side (log and retry). ``token`` identifies the message to
        :meth:`acknowledge`; None when the transport does not acknowledge. In place of
        ``frames``, a DecodeError says that a message came that the transport could not
        unpack into frames (the link step counts it as malformed)."""

    def acknowledge(self, tokens: list[Any]) -> None:
        """The link is done with these messages (handled, or rejected): forget them."""

    def answer(self, token: Any, kind: str, src: str, seq: int, nbytes: int = 0) -> None:
        """For reliable links: tell the sender of the message ``token`` came with
        ``(kind, src, seq)`` (:class:`AckedSender`); acknowledgements may be sent
        together a few ms later (at once when they cover ``nbytes`` enough: see
        :data:`~arroyo_core.reliable.ACK_BYTES`), hellos go at once. Safe to call from
        any thread."""
        raise ConfigError(f"{type(self).__name__} cannot carry a reliable link")

    def run_state(self, in_run: bool) -> None:
        """Told when a run's Start (True) or Stop (False) is received, so that a peer
        leaving after its run's Stop can be told from one lost mid-run."""

    def close(self) -> None:
        """Release everything."""

    def status(self) -> dict[str, Any]:
        """Transport-specific counters (connections, outages) for the ledger."""
        return {}


class Transport(ABC):
    """Makes senders and receivers for the address schemes it is registered under."""

    @abstractmethod
    def sender(self, address: Address, options: dict[str, Any], link: str) -> FrameSender:
        """A sender for ``address``; ``options`` are the link's transport options (a
        ConfigError names the ones it does not know); ``link`` names it in logs."""

    @abstractmethod
    def receiver(self, address: Address, options: dict[str, Any], link: str) -> FrameReceiver:
        """A receiver for ``address``; as :meth:`sender`. ``options`` always holds
        ``max_message_bytes``, the link's limit, so the receiver never allocates more
        than the link would accept for one frame."""

    def name(self, address: Address, options: dict[str, Any]) -> str:
        """How logs and the ledger show the link (e.g. with a password hidden)."""
        return str(address)


def transport_for(address: Address) -> Transport:
    """The registered transport for ``address``'s scheme (ConfigError if there is none)."""
    schemes = registry.names("transport")
    if address.scheme not in schemes:
        raise ConfigError(f"address {address.text!r}: no transport for scheme "
                          f"{address.scheme!r}; registered: {', '.join(schemes) or 'none'}")
    return registry.resolve("transport", address.scheme)()


def new_sender_id() -> str:
    """A sender id that differs across restarts, so a restarted sender starts a new sequence."""
    return f"{os.getpid():x}-{os.urandom(SENDER_ID_BYTES).hex()}"


class WaitLog:
    """When a wait is worth a log line: :meth:`due` is true after the first interval of
    ``schedule`` (seconds), then after each next one, the last repeated for ever;
    :meth:`reset` when the wait is over. Not thread-safe: one per waiting thread.
    """

    def __init__(self, schedule: tuple[float, ...] = WAIT_LOG_SCHEDULE) -> None:
        self.schedule = schedule
        self.began: float | None = None
        self._logged = 0
        self._next = 0.0

    def reset(self) -> None:
        self.began = None

    def due(self) -> bool:
        """Whether to log now (the first call of a wait starts its clock)."""
        now = time.monotonic()
        if self.began is None:
            self.began, self._logged = now, 0
            self._next = now + self.schedule[0]
            return False
        if now < self._next:
            return False
        self._logged += 1
        self._next = now + self.schedule[min(self._logged, len(self.schedule) - 1)]
        return True

    @property
    def waited(self) -> float:
        """Seconds since the wait began."""
        return 0.0 if self.began is None else time.monotonic() - self.began


def wait_for_count(count: Callable[[], int], expected: int, timeout: float,
                   pause: Callable[[], Any], cancelled: Callable[[], bool], link: str,
                   what: str, before: str = "starting the run") -> bool:
    """Call ``pause`` until ``count()`` reaches ``expected``; False on ``timeout`` (0:
    never) or when ``cancelled()`` turns true. Says that it waits (what for, and ``before``
    what) at once, then on :data:`WAIT_LOG_SCHEDULE`, so a run that does not start or go on
    is never a mystery."""
    began = time.monotonic()
    waiting = WaitLog()
    first = True
    while count() < expected:
        now = time.monotonic()
        if cancelled():
            return False
        if timeout and now - began >= timeout:
            log.warning("%s: only %d of %d %s connected after %.1f s; %s anyway", link,
                        count(), expected, what, timeout, before)
            return False
        if waiting.due() or first:
            limit = f"{timeout:.0f} s" if timeout else "no time limit"
            log.info("%s: waiting for %d %s before %s: %d connected (%s)",
                     link, expected, what, before, count(), limit)
            first = False
        pause()
    return True
