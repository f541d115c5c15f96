"""A shm sender's receivers, and its messages in flight to them, kept from what the
receivers say on the control socket (hello, took, bye) and from whether they still live."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import control
from .processes import Identity, alive, host_key

log = logging.getLogger(__name__)


@dataclass
class Flight:
    """One message sent and not yet taken by every receiver it went to."""

    pending: set[bytes]  # receivers that have not said they took it
    slot: int | None  # the sender's slot it uses
    keep: list[Any] = field(default_factory=list)  # forwarded buffers, holding their slots


@dataclass
class Peer:
    who: Identity
    inflight: set[int] = field(default_factory=set)


class Receivers:
    """Who receives from one sender, and what is in flight to whom.

    ``busy`` (set once the sender has a pool) marks, per slot, that a message in flight
    uses it; a slot is cleared when its message has landed (every receiver took it, or
    went away).
    """

    def __init__(self, link: str) -> None:
        self.link = link
        self.peers: dict[bytes, Peer] = {}
        self.flights: dict[int, Flight] = {}
        self.busy: np.ndarray | None = None
        self.lost_in_flight = 0  # messages in flight to receivers that died
        self.refused: Counter[str] = Counter()
        # A reliable sender's: what receivers answered, ``(ident, kind, src, seq)``, for
        # its link to read (None: the sender is not reliable, answers are refused); and
        # what was in flight to a receiver that died is not lost but sent again.
        self.answers: list[tuple[bytes, str, str, int]] | None = None
        # Ids start at random: a receiver's late "took" for a message of a sender that
        # was here before (and restarted) must not land one of ours.
        self._next_id = int.from_bytes(os.urandom(6), "little")

    def heard(self, parts: list[bytes]) -> None:
        """Take one control message: ``[identity, kind, body...]``."""
        ident, kind, body = parts[0], parts[1] if len(parts) > 1 else b"", parts[2:]
        if kind == control.TOOK and body:
            for message_id in control.read_took(body[0]):
                self.took(ident, message_id)
        elif kind == control.HELLO and body and ident not in self.peers:
            said = control.read_hello(body[0])
            if said is None:
                self._refuse("malformed hello", ident)
            elif said[1] != host_key():
                self._refuse("receiver on another host or pid namespace", ident)
            else:
                self.peers[ident] = Peer(said[0])
                log.info("%s: receiver pid %d joined; %d receiver(s) now", self.link,
                         said[0].pid, len(self.peers))
        elif kind == control.BYE:
            self.lost(ident, "receiver closed", warn=False)
        elif kind == control.ANSWER and body and ident in self.peers:
            answer = control.read_answer(body[0])
            if self.answers is None:
                self._refuse("reliable answer to a sender that is not reliable", ident)
            elif answer is None:
                self._refuse("malformed answer", ident)
            else:
                self.answers.append((ident, *answer))
        elif kind != control.HELLO:
            self._refuse("malformed control message", ident)

    def _refuse(self, reason: str, ident: bytes) -> None:
        self.refused[reason] += 1
        if self.refused[reason] == 1:
            log.warning("%s: %s (%r); further ones are only counted", self.link, reason,
                        ident[:40])

    def check(self) -> None:
        """Forget receivers that have died (their messages in flight are lost with them)."""
        for ident, peer in list(self.peers.items()):
            if not alive(peer.who):
                self.lost(ident, f"receiver pid {peer.who.pid} died")

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def sent(self, message_id: int, to: set[bytes], slot: int | None, keep: list[Any]) -> None:
        for ident in to:
            self.peers[ident].inflight.add(message_id)
        self.flights[message_id] = Flight(to, slot, keep)
        if slot is not None and self.busy is not None:
            self.busy[slot] = True

    def took(self, ident: bytes, message_id: int) -> None:
        flight = self.flights.get(message_id)
        peer = self.peers.get(ident)
        if peer is not None:
            peer.inflight.discard(message_id)
        if flight is not None:
            flight.pending.discard(ident)
            if not flight.pending:
                self.flights.pop(message_id)
                if flight.slot is not None and self.busy is not None:
                    self.busy[flight.slot] = False

    def lost(self, ident: bytes, why: str, warn: bool = True) -> None:
        """Receiver ``ident`` has gone: what was in flight to it no longer holds anything."""
        peer = self.peers.pop(ident, None)
        if peer is None:
            return
        resent = self.answers is not None  # a reliable link sends them again
        if warn and not resent:
            self.lost_in_flight += len(peer.inflight)
        (log.warning if warn and not resent else log.info)(
            "%s: %s with %d message(s) in flight%s; %d receiver(s) left", self.link, why,
            len(peer.inflight), " (kept, to be sent again)" if resent else "",
            len(self.peers))
        for message_id in list(peer.inflight):
            self.took(ident, message_id)
