"""Dispatch to a pool of workers: the link step that spreads a run over N processes.

A :class:`DispatchLink` is an output link (``out_pattern = "dispatch"``) whose transport
addresses each worker itself and hears its credit (:class:`~arroyo_core.transport.PeerSender`;
over ZeroMQ a ROUTER, :mod:`arroyo_core.transports.zmq.pool`). The choices are made
here, the same for every transport:

- **Credits.** A worker says how many messages it can hold (its ``credit``) and gives one
  back for each it has finished. An Event goes to the worker with the most credit left, so
  a slow or paused worker is handed no more than its credit; with none left anywhere, the
  link waits (back-pressure, as a full PUSH does).
- **Start and Stop go to every worker**, and a worker that joins mid-run (started late, or
  restarted after a crash) gets the run's Start before anything else. Every message, these
  included, uses a credit, so credits stay exact.
- **Numbering per worker.** Each worker gets its own stream: sender id ``SRC.K`` (K counts
  the workers this link has seen) and sequence numbers from 0, so a worker's ledger has no
  gap for what went to the others. Its Start and Stop carry ``pool``: ``id`` (this link's
  sender id), ``worker`` (K) and, in the Stop, ``share`` (the run's Events this worker
  was given), ``stops`` and ``index`` (how many workers got this Stop, and which one this
  is) and ``accounted`` (the Stop's filtered, failed and dropped counts as they left
  here). A worker's run ledger counts its share against ``share``; the stage after the
  pool joins the workers' Stops into one (:mod:`arroyo_core.fanin`), where the run is
  counted whole again: a frame given to worker 2 is never missing at worker 1, and a frame
  lost anywhere in the pool is missing after it.
- **A worker that dies** (its connection closes) is noticed when a message to it fails or
  when it is probed, before each Stop and while the link waits for credit; what it had
  been given and not finished is counted as lost after the pool (exactly: from the frame
  numbers), not sent again (see docs/pools.md); with ``reliable``, they go to the other
  workers (docs/reliability.md section 6).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .link import OutputLink
from .message import Message
from .reliable import Origin, carriage
from .routing import decide, parse_rules
from .run_ledger import accounted
from .status import LinkStatus
from .transport import PeerSender, WaitLog, wait_for_count
from .wire import encode

log = logging.getLogger(__name__)

CREDIT_WAIT_S = 0.1  # how long one wait for credit lasts before the link looks around
MAX_AFFINITIES = 65536  # affinity values remembered; the oldest is forgotten first
PROBE_S = 0.25  # how often workers with no credit are probed while sending (each is woken)
RATE_WINDOW_S = 1.0  # a worker's rate: over the time since it was last read, at least this


@dataclass
class Worker:
    """One worker as the dispatcher knows it."""

    peer: bytes
    number: int  # K: the workers seen so far, in order of their hello
    src: str  # the sender id of its stream
    credit: int
    seq: int = 0
    given: int = 0  # Events given to it (all runs)
    finished: int = 0  # messages it gave a credit back for
    sent: int = 0  # messages sent to it (Start, Events, Stop)
    run_share: int = 0  # Events of the current run given to it
    started: bool = False  # it has the current run's Start
    alive: bool = True
    joined: float = field(default_factory=time.monotonic)
    rate_mark: tuple[float, int] = (0.0, 0)  # (when, finished) at the last rate reading
    rate: float = 0.0  # messages finished per second
    held: deque[tuple[Message, Origin]] = field(default_factory=deque)  # reliable: unfinished

    def status(self, total: int) -> dict[str, Any]:
        now = time.monotonic()
        when, count = self.rate_mark
        if not when or now - when >= RATE_WINDOW_S:
            if when:
                self.rate = (self.finished - count) / (now - when)
            self.rate_mark = (now, self.finished)
        return {"worker": self.number, "src": self.src, "alive": self.alive,
                "given": self.given, "share": round(self.given / total, 4) if total else 0.0,
                "held": self.sent - self.finished, "credit": self.credit,
                "rate": round(self.rate, 1)}


class DispatchLink(OutputLink):
    """Sends a run to a pool of workers: Events by credit, Start and Stop to all.

    Takes an output link's address and options; its transport must address peers
    (``dispatch`` over ZeroMQ). ``peers`` is how many workers a run waits for before its
    Start (e.g. the pool's ``replicas``). ``route`` is a list of routing rules (to every
    worker, to none, or by affinity to one: :mod:`arroyo_core.routing`).
    """

    def __init__(self, address: str, route: list[Any] | None = None, **options: Any) -> None:
        self.rules = parse_rules(route)
        options.setdefault("pattern", "dispatch")
        self.keeps = bool(options.pop("reliable", False))  # reliable: keep, give again
        super().__init__(address, **options)
        if not isinstance(self.sender, PeerSender):
            raise ConfigError(f"{self.ledger.link}: its transport cannot dispatch to a pool "
                              "(it does not address workers one by one)")
        self.peer_sender: PeerSender = self.sender
        self.workers: dict[bytes, Worker] = {}
        self.seen = 0  # workers ever heard from
        self.gone = 0  # workers found dead
        self._start: Message | None = None  # the open run's Start, for workers joining
        self._wait = WaitLog()
        self.affinity: dict[Any, bytes] = {}  # an affinity value -> its worker's peer
        self.routed = {"all": 0, "none": 0, "affinity": 0}  # Events routed by a rule
        self._given = 0  # messages published (reliable: their origins are ours)
        self._origin: Origin = ("", 0, 0)  # of the message being published
        self._start_origin: Origin = ("", 0, 0)
        self._redo: deque[tuple[Message, Origin]] = deque()  # a dead worker's Events
        self._probed = 0.0
        if self.keeps and self.rules:
            raise ConfigError(f"{self.ledger.link}: routing rules are not reliable yet")

    def publish(self, message: Message) -> None:
        kind = message.kind
        self._origin = (self.src, self._given, 0)
        self._given += 1
        if kind == "event":
            if self.keeps and time.monotonic() - self._probed > PROBE_S:
                self._probed = time.monotonic()
                self._probe_busy()  # a dead worker's Events go on soon, not at the Stop
            self._give_again()
            dropped = self._route(message) if self.rules else self._dispatch(message)
        elif kind == "start":
            self._start_origin = self._origin
            self._wait_for_workers()
            self.sender.run_state(True)
            self._start = message
            for worker in self.workers.values():
                worker.started = False
                worker.run_share = 0
            self._listen(0)
            dropped = None if self._start_all() else "no worker"
        else:
            message = self._with_drops(message)
            dropped = self._stop_all(message)
            self._start = None
            self.sender.run_state(False)
        if dropped is None:
            self.runs.observe(message)
        else:
            self.ledger.drop(dropped)
            self.runs.drop(message)

    # --- credits ----------------------------------------------------------------------

    def _listen(self, timeout: float) -> None:
        """Take what workers said (waiting up to ``timeout`` s for the first word)."""
        for peer, hello, count in self.peer_sender.credits(timeout):
            worker = self.workers.get(peer)
            if worker is None:
                if not hello:
                    continue  # a credit of a worker forgotten as dead: it is back, it says hello
                self.seen += 1
                worker = self.workers[peer] = Worker(peer, self.seen, f"{self.src}.{self.seen}",
                                                     0)
                log.info("%s: worker %d joined (%d worker(s) now)", self.ledger.link,
                         worker.number, self._alive())
            if hello:
                worker.credit = min(count, self._max_credit())
                worker.alive = True
            else:
                worker.credit += count
                worker.finished += count
                for _ in range(min(count, len(worker.held))):
                    worker.held.popleft()

    def _max_credit(self) -> int:
        return self.peer_sender.max_credit

    def _alive(self) -> int:
        return sum(1 for worker in self.workers.values() if worker.alive)

    def _wait_for_workers(self) -> None:
        expected, timeout = self.peer_sender.expected_peers, self.peer_sender.peer_timeout
        if expected:
            wait_for_count(self._alive, expected, timeout, lambda: self._listen(CREDIT_WAIT_S),
                           lambda: self._abandoned(), self.ledger.link, "worker(s)")

    def _abandoned(self) -> bool:
        return self.peer_sender.abandoned

    def _dead(self, worker: Worker) -> None:
        if worker.alive:
            worker.alive = False
            self.gone += 1
            lost = worker.sent - worker.finished
            again = [(m, o) for m, o in worker.held if m.kind == "event"]
            self._redo.extend(again)
            fate = (f"{len(again)} Event(s) go to the other workers" if self.keeps else
                    "their frames count as lost after the pool")
            log.warning("%s: worker %d is gone, %d message(s) it held unfinished (%s); %d "
                        "worker(s) left", self.ledger.link, worker.number, lost, fate,
                        self._alive())
        del self.workers[worker.peer]

    def _give_again(self) -> None:
        """A dead worker's unfinished Events, to the others, before anything new."""
        origin = self._origin
        while self._redo:
            event, self._origin = self._redo.popleft()
            self._dispatch(event)
        self._origin = origin

    # --- sending ------------------------------------------------------------------------

    def _send_to(self, worker: Worker, message: Message, origin: Origin | None = None) -> bool:
        frames = encode(message, src=worker.src, seq=worker.seq)
        origin = origin or self._origin
        if message.kind != "event":  # each worker's copy of a Start or Stop is its own
            origin = (*origin[:2], worker.number)
        if self.keeps:
            frames[0] = carriage(worker.seq - len(worker.held), [[*origin, 1]], frames[0])
        if not self.peer_sender.send_to(worker.peer, frames):
            self._dead(worker)
            return False
        if self.keeps:
            worker.held.append((message, origin))
        worker.seq += 1
        worker.sent += 1
        worker.credit -= 1
        self.ledger.sent += 1  # every copy: each worker's stream is numbered on its own
        return True

    def _with_pool(self, message: Message, worker: Worker, **more: Any) -> Message:
        pool = {"id": self.src, "worker": worker.number, **more}
        return type(message)(meta={**message.meta, "pool": pool})

    def _start_all(self) -> bool:
        """Send the open run's Start to every worker that does not have it yet."""
        start = self._start
        if start is None:
            return True
        sent = False
        for worker in list(self.workers.values()):
            if not worker.started:
                if self._send_to(worker, self._with_pool(start, worker), self._start_origin):
                    worker.started = sent = True
            else:
                sent = True
        return sent or not self.workers

    def _route(self, event: Message) -> str | None:
        """An Event by the routing rules (arroyo_core.routing)."""
        to, value = decide(self.rules, event.meta)
        if to == "credit":
            return self._dispatch(event)
        self.routed[to] += 1
        if to == "none":
            return "discarded by a routing rule"
        if to == "affinity":
            return self._dispatch(event, value)
        return self._broadcast(event)

    def _broadcast(self, event: Message) -> str | None:
        """A copy to every worker there is, each when it has credit."""
        self._listen(0)
        if self._start is not None:
            self._start_all()
        pending = list(self.workers)
        sent = False
        while pending:
            peer = pending[0]
            worker = self.workers.get(peer)
            if worker is None or not worker.alive:
                pending.pop(0)
                continue
            if worker.credit > 0:
                pending.pop(0)
                if self._send_to(worker, event):
                    worker.given += 1
                    worker.run_share += 1
                    sent = True
                continue
            if self._abandoned():
                break
            self._listen(CREDIT_WAIT_S)
            self._probe_busy()
        if sent:
            return None
        return self._dispatch(event)  # no worker yet: the first to come takes it

    def _dispatch(self, event: Message, affinity: Any = None) -> str | None:
        waiting = self._wait
        waiting.reset()
        while True:
            self._listen(0)
            if self._start is not None:
                self._start_all()  # a worker that joined mid-run gets the Start first
            candidates = [w for w in self.workers.values() if w.credit > 0 and w.alive]
            if affinity is not None:
                candidates = self._affine(affinity, candidates)
            if candidates:
                worker = max(candidates, key=_room)
                if self._send_to(worker, event):
                    worker.given += 1
                    worker.run_share += 1
                    if affinity is not None:
                        self.affinity[affinity] = worker.peer
                    return None
                continue
            if self._abandoned():
                return "no worker took it before shutdown"
            if waiting.due():
                log.info("%s: waiting %.0f s to dispatch: %s", self.ledger.link,
                         waiting.waited, self._why_waiting())
            self._listen(CREDIT_WAIT_S)
            if time.monotonic() - self._probed > PROBE_S:
                self._probed = time.monotonic()
                self._probe_busy()

    def _affine(self, value: Any, candidates: list[Worker]) -> list[Worker]:
        """The worker that holds ``value``'s affinity (if it has credit), or, if none
        alive does, any candidate (which then takes the affinity)."""
        peer = self.affinity.get(value)
        if peer is None or peer not in self.workers:
            if len(self.affinity) >= MAX_AFFINITIES:
                del self.affinity[next(iter(self.affinity))]
            return candidates
        return [w for w in candidates if w.peer == peer]

    def _why_waiting(self) -> str:
        if self.workers:
            return f"{self._alive()} worker(s), none with credit left (all busy)"
        return self.peer_sender.waiting_reason()

    def _probe_busy(self) -> None:
        """Find workers that died while holding all their credit (nothing is sent to them,
        so no send would fail)."""
        for worker in list(self.workers.values()):
            if worker.credit <= 0 and not self.peer_sender.probe(worker.peer):
                self._dead(worker)

    def _stop_all(self, stop: Message) -> str | None:
        """The run's Stop to every worker there is, each saying how many got it."""
        self._give_again()
        self._listen(0)
        for worker in list(self.workers.values()):
            if not self.peer_sender.probe(worker.peer):
                self._dead(worker)
        self._start_all()
        workers = [w for w in self.workers.values() if w.started]
        if not workers:
            log.warning("%s: no worker to send the run's Stop to", self.ledger.link)
            return "no worker"
        base = list(accounted(stop.meta))
        for index, worker in enumerate(workers):
            copy = self._with_pool(stop, worker, stops=len(workers), index=index,
                                   share=worker.run_share, accounted=base)
            if not self._send_to(worker, copy):
                log.warning("%s: worker %d went away before its Stop; the stage after the "
                            "pool waits for that Stop until its stop_timeout",
                            self.ledger.link, worker.number)
        for worker in self.workers.values():
            worker.started = False
        return None

    def close(self) -> None:
        """Wait (up to the sender's linger) until every worker has finished what it was
        sent, reading its credits, then close. Closing sooner would lose the run's tail:
        credits unread here make the kernel reset the connections (it answers a close
        with unread data by RST), and what was still on its way to a worker is gone."""
        deadline = time.monotonic() + self.peer_sender.linger_s
        while not self._abandoned() and time.monotonic() < deadline:
            busy = [w for w in self.workers.values() if w.sent > w.finished]
            if not busy and not self._redo:
                break
            self._give_again()
            self._listen(CREDIT_WAIT_S)
            for worker in busy:
                if not self.peer_sender.probe(worker.peer):
                    self._dead(worker)
        super().close()

    def status(self) -> LinkStatus:
        record = super().status()
        workers = list(self.workers.values())  # read from the status server's thread
        total = sum(w.given for w in workers)
        pool = {"workers": [w.status(total) for w in workers],
                "joined": self.seen, "gone": self.gone}
        if self.rules:
            pool["routed"] = dict(self.routed)
        return record.with_transport({**self.peer_sender.status(), "pool": pool})


def _room(worker: Worker) -> tuple[int, int]:
    """Most credit first; among equals, the one given least."""
    return worker.credit, -worker.given

