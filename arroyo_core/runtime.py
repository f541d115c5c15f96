"""Runs one Listener -> Operator -> Publishers group: a receiving thread, a bounded
queue, and a processing loop, so numpy work in ``process`` never stalls receiving.

Every service (listener, operator, publisher) is this runtime with different parts.

What does not go on is counted, per run, and said in the run's Stop, so that no hop after
it takes it for a loss: an event the operator returned no event for (None, an empty list,
e.g. ``threshold`` with ``drop_empty``) is *filtered*, one it raised on is *failed*, one the
input queue's policy dropped is *dropped*. The runtime adds this hop's counts to the
``filtered``, ``failed`` and ``dropped`` keys of every Stop it routes for the run (each
output link adds its own drops to ``dropped``), and every run ledger after it subtracts them
from what it misses (:attr:`~arroyo_core.status.RunLedgerStatus.lost`). docs/reliability.md
section 2 gives the sum.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .components import Listener, Operator, Publisher, as_operator
from .memory import keep_freed_blocks
from .message import Event, Message, Start, Stop
from .queues import MessageQueue
from .reliable import ACK_DELAY_S
from .results import checked_publish, operator_results, read_only
from .run_ledger import ACCOUNTED, MAX_RUNS, accounted, run_key
from .status import OperatorStatus, ServiceStatus
from .timing import Histogram

log = logging.getLogger(__name__)

FINISH_IDLE_S = 1.0  # with finish_run, how long an idle input is waited on for a Stop
POLL_S = ACK_DELAY_S  # how often an idle runtime with reliable outputs reads acknowledgements
_END = object()  # put by the receiving thread when its listener has returned
# What a hook usually returns, known not to be awaitable without asking (inspect's check
# costs more than forwarding a small event does)
_NOT_AWAITABLE = frozenset([type(None), list, tuple, Start, Event, Stop])


class Runtime:
    """Connects a listener, an operator and publishers, and runs them until the stream ends.

    Parameters
    ----------
    listener, operator, publishers
        The parts; ``operator`` may be any object with a ``process(message)`` method.
    queue
        The bounded queue between receiving and processing (default: 64 messages, 1 GiB).
    drain_timeout
        Seconds :meth:`stop` allows for queued messages to be processed and sent before
        publishers give up on peers that do not take them.
    finish_run
        If true, :meth:`stop` in the middle of a run keeps receiving until that run's Stop
        has arrived: within ``drain_timeout``, and only while messages keep coming (after
        ``FINISH_IDLE_S`` without one, upstream is not sending that Stop). Services fed by
        another service set it, so stopping every service of a chain at once loses
        nothing in flight: the source ends its run at once and every service downstream
        passes the Stop on before it stops.
    """

    def __init__(self, listener: Listener, operator: Any, publishers: Iterable[Publisher] = (),
                 *, queue: MessageQueue | None = None, drain_timeout: float = 10.0,
                 finish_run: bool = False) -> None:
        self.listener = listener
        self.operator: Operator = as_operator(operator)
        # The runtime routes: every result goes to every publisher. It shares the
        # operator's list, so publishers added to the operator (its public API) count too.
        self.publishers = self.operator.publishers
        self.publishers.extend(publishers)
        # What a hook publishes is checked as what it returns is (arroyo_core.results).
        self.operator.attach(self._publish_from_hook)
        self._loop: asyncio.AbstractEventLoop | None = None  # for async operators, lazily
        # not `queue or ...`: an empty MessageQueue is falsy (it has __len__)
        self.queue = queue if queue is not None else MessageQueue(name="input queue")
        self.drain_timeout = drain_timeout
        self.finish_run = finish_run
        self._open_runs: set[Any] = set()  # run ids received without their Stop yet
        self._stopping = False
        self._last_delivery = time.monotonic()
        self._drain_timer: threading.Timer | None = None  # cancelled once run() returns
        self._routing = False  # the processing thread is handing a result to publishers
        self.ready = threading.Event()
        self.processed = 0
        self.errors: Counter[str] = Counter()
        self.events_in = 0
        self.events_out = 0  # events routed (returned or published by the operator)
        self.filtered = 0
        self.failed = 0
        # Per run (by run_key): events filtered and failed here, until the run's Stop.
        self._run_counts: dict[Any, list[int]] = {}
        self._stop_counts: dict[str, int] | None = None  # while a Stop is processed
        # Time each message's processing (arroyo_core.timing); off unless asked for, e.g.
        # by a service with a metrics endpoint.
        self.timing: Histogram | None = None
        self.listener_error: BaseException | None = None
        self._opened: list[Any] = []
        self._started = time.monotonic()

    def open(self) -> None:
        """Open publishers, then the listener; on failure close what was opened and raise."""
        keep_freed_blocks()  # a buffer per message, reused rather than faulted in afresh
        try:
            parts: list[Publisher | Listener] = [*self.publishers, self.listener]
            for part in parts:
                part.open()
                self._opened.append(part)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        # In the order opened: publishers first, so what they finish as they close (a
        # writer's last flush, acknowledgements a reliable output waits for) is still
        # acknowledged upstream by the listener (its receiving thread has ended by now).
        while self._opened:
            part = self._opened.pop(0)
            try:
                part.close()
            except Exception:
                log.exception("closing %r failed", part)

    def time_operator(self) -> None:
        """Time the operator's processing from now on: every message, or one in a few for a
        fast operator (:mod:`arroyo_core.timing`); the histogram is in :meth:`status`."""
        if self.timing is None:
            self.timing = Histogram()

    def run(self) -> None:
        """Open (if not yet), process until the listener ends, drain, and close."""
        if not self._opened:
            self.open()
        receiver = threading.Thread(target=self._receive, name="arroyo-receive", daemon=True)
        receiver.start()
        # A durable source forgets a message once told it was handled: what the operator
        # made of it must have been sent by then, so outputs hold nothing back.
        acknowledges = self.listener.acknowledges
        if not acknowledges:
            for publisher in self.publishers:
                publisher.allow_batching()  # flushed below whenever the queue is empty
        self.listener.follow(self.publishers)
        # A reliable output hears its receiver's acknowledgements on this thread: while
        # idle, it looks every POLL_S (flush), or its upstream would wait for them.
        idle = POLL_S if any(getattr(p, "reliable", None) for p in self.publishers) else None
        listener = self.listener
        self.ready.set()
        try:
            ended = False
            while not ended:
                # A batch per wake-up, not a message: waking this thread costs more than
                # handling a small event (see MessageQueue.get_many).
                try:
                    items = self.queue.get_many(timeout=idle)
                except TimeoutError:
                    items = []
                for item in items:
                    if item is _END:
                        ended = True
                        break
                    listener.handling(item)
                    self._handle(item)
                    listener.handled(item)  # a durable source may acknowledge it now
                # (drop the last message before waiting: a buffer held until the next one
                # arrives makes its source allocate, and fault in, a new one per message)
                items, item = [], None
                for publisher in self.publishers:
                    publisher.flush()  # what they held back, now the queue is empty
        finally:
            receiver.join(timeout=self.drain_timeout)
            self._close_operator()
            self.close()
            if self._loop is not None:
                self._loop.close()
            if self._drain_timer is not None:
                self._drain_timer.cancel()  # a finished run leaves no timer thread behind

    def stop(self) -> None:
        """Stop receiving (after the current run with ``finish_run``); what is queued is
        still processed and sent. Everything ends within ``drain_timeout``."""
        self._stopping = True  # set before reading _open_runs: see _deliver
        if self.finish_run and self._open_runs:
            log.info("stopping after the current run's Stop arrives (at most %.1f s, or "
                     "%.1f s without any message)", self.drain_timeout, FINISH_IDLE_S)
            threading.Thread(target=self._stop_when_idle, daemon=True).start()
        else:
            self.listener.stop()
        timer = self._drain_timer = threading.Timer(self.drain_timeout, self._abandon)
        timer.daemon = True
        timer.start()

    def _stop_when_idle(self) -> None:
        """Stop waiting for a run's Stop once nothing arrives: upstream is not sending it."""
        while not self.listener.stop_requested.wait(0.1):
            if time.monotonic() - self._last_delivery > FINISH_IDLE_S:
                log.info("no message for %.1f s; stopping without the run's Stop",
                         FINISH_IDLE_S)
                self.listener.stop()

    def _close_operator(self) -> None:
        """An operator's own ``close()`` (e.g. an arroyopy operator's ``stop``), if it has
        one, once the stream has drained; awaited if it is async."""
        close = getattr(self.operator, "close", None)
        if close is None:
            return
        try:
            result = close()
            if inspect.isawaitable(result):
                self._await(result)
        except Exception:
            log.exception("closing operator %s failed", type(self.operator).__name__)

    def _abandon(self) -> None:
        # A warning only when something is given up: a send waiting for a peer, or
        # messages still queued. Otherwise the drain time ran out on an idle input (no
        # upstream, or a run whose Stop never came), which loses nothing.
        if self._routing or len(self.queue):
            log.warning("drain time of %.1f s ran out; abandoning sends still waiting for a "
                        "peer (%d message(s) still queued)", self.drain_timeout,
                        len(self.queue))
        else:
            log.info("drain time of %.1f s ran out with nothing waiting to be sent; stopping",
                     self.drain_timeout)
        self.listener.stop()
        for publisher in self.publishers:
            publisher.abandon()

    def _receive(self) -> None:
        try:
            self.listener.deliver_many = (self._deliver_many if self.finish_run
                                          else self.queue.put_many)
            self.listener.start(self._deliver if self.finish_run else self.queue.put)
        except BaseException as exc:
            self.listener_error = exc
            log.exception("listener %s failed", type(self.listener).__name__)
        finally:
            self.queue.put(_END)

    def _deliver(self, message: Message) -> None:
        """Queue a received message, keeping track of open runs for :meth:`stop`."""
        self._last_delivery = time.monotonic()
        self._note(message)
        self.queue.put(message)

    def _deliver_many(self, messages: list[Message]) -> None:
        """:meth:`_deliver` for several messages, queued at once."""
        self._last_delivery = time.monotonic()
        for message in messages:
            if message.kind != "event" or not self._open_runs:  # else nothing to note
                self._note(message)
        self.queue.put_many(messages)

    def _note(self, message: Message) -> None:
        """Keep track of open runs for :meth:`stop`."""
        kind = message.kind
        if kind == "stop":
            run = message.meta.get("run")
            if run in self._open_runs:
                self._open_runs.discard(run)
            else:  # a Stop we cannot match (no run ids): take it as the end of all runs
                self._open_runs.clear()
            if self._stopping and not self._open_runs:
                self.listener.stop()
        elif kind == "start" or not self._open_runs:  # an Event with none open: joined mid-run
            self._open_runs.add(message.meta.get("run"))

    def route(self, message: Message) -> None:
        """Send one result to every publisher."""
        kind = message.kind
        if kind == "event":
            self.events_out += 1
        elif kind == "stop" and self._stop_counts is not None:
            message.meta.update(self._stop_counts)
        for publisher in self.publishers:
            publisher.publish(message)

    def _count(self, message: Message, index: int) -> None:
        """One more event of ``message``'s run filtered (index 0) or failed (1) here."""
        key = run_key(message.meta.get("run"))
        counts = self._run_counts.get(key)
        if counts is None:
            if len(self._run_counts) >= MAX_RUNS:  # runs whose Stop never came
                del self._run_counts[next(iter(self._run_counts))]
            counts = self._run_counts[key] = [0, 0]
        counts[index] += 1

    def _accounted(self, stop: Message) -> dict[str, int]:
        """The counts the run's Stop carries on: those it came with plus this hop's."""
        run = stop.meta.get("run")
        filtered, failed = self._run_counts.pop(run_key(run), (0, 0))
        before = accounted(stop.meta)
        here = (filtered, failed, self.queue.take_dropped(run))
        # Only counts there are: a Stop with nothing to account for goes on unchanged.
        return {key: a + b for key, a, b in zip(ACCOUNTED, before, here, strict=True)
                if a + b}

    def _publish_from_hook(self, message: Message) -> None:
        self.route(checked_publish(self.operator, message))

    def _handle(self, message: Message) -> None:
        # The same checks in one process as in a service (arroyo_core.results): the
        # operator gets read-only arrays, as decoded ones are, and every result must be
        # a Message the wire can carry, or the operator fails on this message.
        kind = message.kind
        if isinstance(message, Event):
            read_only(message)
            self.events_in += 1
            out = self.events_out
        elif kind == "stop":
            self._stop_counts = self._accounted(message)
        timing = self.timing
        if timing is not None:  # one message in timing.every (arroyo_core.timing)
            timing.skip -= 1
            if timing.skip > 0:
                timing = None
        try:
            if timing is not None:
                began = time.perf_counter()
            results = self.operator.process(message)
            if results.__class__ not in _NOT_AWAITABLE and inspect.isawaitable(results):
                results = self._await(results)
            if timing is not None:
                timing.observe(time.perf_counter() - began)
            self._routing = True
            try:
                for result in operator_results(results, self.operator, message):
                    self.route(result)
            finally:
                self._routing = False
        except Exception as exc:
            name = type(exc).__name__
            self.errors[name] += 1
            if self.errors[name] == 1:
                log.exception("operator failed on a %s message; the stream goes on, further "
                              "%s errors are counted", message.kind, name)
            if kind == "event":
                self.failed += 1
                self._count(message, 1)
            return
        finally:
            self._stop_counts = None
        self.processed += 1
        if kind == "event" and self.events_out == out:
            self.filtered += 1
            self._count(message, 0)

    def _await(self, awaitable: Any) -> Any:
        """Run an async operator's hook on this runtime's own event loop, in this thread."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(awaitable)

    def status(self) -> ServiceStatus:
        """The service's status record, made from its parts: every link's counters, the
        queue and the operator (see :mod:`arroyo_core.status`)."""
        return ServiceStatus(
            uptime=time.monotonic() - self._started, ready=self.ready.is_set(),
            input=self.listener.status(), queue=self.queue.status(),
            operator=OperatorStatus(type=type(self.operator).__name__,
                                    processed=self.processed, errors=dict(self.errors),
                                    events_in=self.events_in, events_out=self.events_out,
                                    filtered=self.filtered, failed=self.failed,
                                    seconds=(self.timing.status() if self.timing is not None
                                             else None)),
            outputs=[publisher.status() for publisher in self.publishers])

    def stats(self) -> dict[str, Any]:
        """:meth:`status` as plain data (msgpack- and JSON-safe), for the status server."""
        return self.status().to_dict()
