"""The three plug-in points: Listener, Operator and Publisher.

A runtime calls ``open()`` on every component before it reports ready (so a bad address
fails the service at start), then runs the listener in its own thread, and calls
``close()`` after the stream has drained. ``close`` is not guaranteed to run if the
process is killed.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from .message import Event, Message, Start, Stop
from .status import LinkStatus
from .watermark import Watermark

Deliver = Callable[[Message], None]
Results = Message | Iterable[Message] | None


class Listener(ABC):
    """Receives from the outside world and hands each Message to ``deliver``.

    ``acknowledges``: true for a durable source that forgets a message once told it was
    :meth:`handled`; the runtime then sends what it made of each message before saying
    so (its outputs do not batch).
    """

    _stop_requested: threading.Event | None = None
    acknowledges = False
    # Set by the runtime before start(): what ``deliver`` does for each of a list of
    # messages, at once (one wake-up of the processing thread for a batch of small
    # events); a listener that receives several at once may use it. None outside a runtime.
    deliver_many: Callable[[list[Message]], None] | None = None

    @property
    def stop_requested(self) -> threading.Event:
        """Set by :meth:`stop`; ``start`` loops watch it (created per instance, lazily)."""
        if self._stop_requested is None:
            self._stop_requested = threading.Event()
        return self._stop_requested

    def open(self) -> None:
        """Bind, connect or open what the listener reads from."""

    @abstractmethod
    def start(self, deliver: Deliver) -> None:
        """Receive until the source ends or :meth:`stop` is called; runs in its own thread."""

    def stop(self) -> None:
        """Ask :meth:`start` to return soon; safe to call from any thread."""
        self.stop_requested.set()

    def handled(self, message: Message) -> None:
        """Called from the processing thread once ``message`` (as delivered) has been through
        the operator and its results handed to every publisher, or the operator failed on it
        (counted). Runtimes handle messages in the order they were delivered, so every
        message delivered before it has been handled or dropped by the queue's policy. A
        durable source acknowledges here (and sets ``acknowledges``, so that the results
        were sent, not held back in a batch); the default does nothing."""

    def follow(self, publishers: list[Publisher]) -> None:
        """Told, before the stream starts, which publishers the runtime hands results
        to: a reliable input finishes a message only once what it made was acknowledged
        by the reliable ones (:mod:`arroyo_core.reliable_link`); the default ignores it."""

    def handling(self, message: Message) -> None:
        """Called from the processing thread just before ``message`` goes to the
        operator (what is published until the next call was made from it)."""

    def close(self) -> None:
        """Release what :meth:`open` acquired."""

    def status(self) -> LinkStatus:
        """This input's status record; by default made from :meth:`stats` (see
        :meth:`LinkStatus.from_stats <arroyo_core.status.LinkStatus.from_stats>`)."""
        return LinkStatus.from_stats(self.stats(), "input", type(self).__name__)

    def stats(self) -> dict[str, Any]:
        """Counters for the loss ledger, as plain data (``link`` names the part); a
        plug-in that has typed counters overrides :meth:`status` instead."""
        return {}


class Publisher(ABC):
    """Sends Messages to the outside world.

    ``watermark``: set by a publisher that is not done with a message when ``publish``
    returns (a reliable output until acknowledged, a file writer until flushed): a
    reliable input upstream acknowledges only what every watermark says is done
    (:mod:`arroyo_core.watermark`). None: done when ``publish`` returns.
    """

    watermark: Watermark | None = None

    def open(self) -> None:
        """Bind, connect or open what the publisher writes to."""

    @abstractmethod
    def publish(self, message: Message) -> None:
        """Send one message; called from the runtime's processing thread only."""

    def allow_batching(self) -> None:
        """Told by a caller that will call :meth:`flush` whenever it has nothing more to
        publish for now (the runtime): :meth:`publish` may then hold small messages back
        to send them together."""

    def flush(self) -> None:
        """Send what :meth:`publish` held back, if anything."""

    def abandon(self) -> None:
        """Give up on sends still waiting for a peer (the runtime's drain time ran out)."""

    def close(self) -> None:
        """Flush and release what :meth:`open` acquired."""

    def status(self) -> LinkStatus:
        """This output's status record; by default made from :meth:`stats` (see
        :meth:`LinkStatus.from_stats <arroyo_core.status.LinkStatus.from_stats>`)."""
        return LinkStatus.from_stats(self.stats(), "output", type(self).__name__)

    def stats(self) -> dict[str, Any]:
        """Counters for the loss ledger, as plain data (``link`` names the part); a
        plug-in that has typed counters overrides :meth:`status` instead."""
        return {}


class Operator:
    """Turns Messages into Messages.

    ``process`` routes each message to ``on_start``, ``on_event`` or ``on_stop``, which by
    default pass it on unchanged; override the one you need. Each may return a Message,
    None (nothing to publish) or an iterable of Messages, and each may be ``async def``
    (the runtime awaits it on an event loop of its own). The runtime holds every operator
    to what the wire needs, in one process as in a service (:mod:`arroyo_core.results`):
    received arrays are read-only, and returning anything else (a dict, an array, a str)
    or metadata the wire cannot carry (a datetime) fails the operator on that message. A
    plain object with a ``process`` method works as well: the runtime wraps it in
    :class:`FunctionOperator`.

    Publishers added here are handed to the runtime that runs the operator, which sends
    every result to all of them: the operator never sends anything itself. An operator
    that has a ``close()`` method (plain or async) has it called once the stream has
    drained.
    """

    def __init__(self) -> None:
        self.publishers: list[Publisher] = []
        self._route: Deliver | None = None

    def add_publisher(self, publisher: Publisher) -> None:
        self.publishers.append(publisher)

    def remove_publisher(self, publisher: Publisher) -> None:
        self.publishers.remove(publisher)

    def attach(self, route: Deliver) -> None:
        """Called by the runtime that runs this operator: :meth:`publish` goes to ``route``."""
        self._route = route

    def process(self, message: Message) -> Results:
        if isinstance(message, Event):
            return self.on_event(message)
        if isinstance(message, Start):
            return self.on_start(message)
        if isinstance(message, Stop):
            return self.on_stop(message)
        return message

    def on_start(self, start: Start) -> Results:
        return start

    def on_event(self, event: Event) -> Results:
        return event

    def on_stop(self, stop: Stop) -> Results:
        return stop

    def publish(self, message: Message) -> None:
        """Publish ``message`` now, from inside a hook, besides what the hook returns: the
        runtime routes it like a returned result (without a runtime, to the publishers)."""
        route = getattr(self, "_route", None)  # a subclass may skip Operator.__init__
        if route is not None:
            route(message)
            return
        for publisher in self.publishers:
            publisher.publish(message)


class FunctionOperator(Operator):
    """Adapts any ``process(message)`` callable to the Operator interface."""

    def __init__(self, process: Callable[[Message], Results]) -> None:
        super().__init__()
        # an instance attribute shadows the method on purpose; the callable need not name
        # its argument ``message``
        self.process = process  # type: ignore[method-assign,assignment]


def as_operator(obj: Any) -> Operator:
    """Return ``obj`` if it is an Operator, else wrap its ``process`` method (or, for an
    operator written against arroyopy's base class, wrap it in its adapter)."""
    from .arroyopy_plugins import ArroyopyOperator, is_arroyopy  # (it builds on this module)

    if is_arroyopy(type(obj), "Operator"):  # async process that publishes from inside
        return ArroyopyOperator(obj)
    if isinstance(obj, Operator):
        if not hasattr(obj, "publishers"):
            obj.publishers = []  # a subclass that skipped Operator.__init__
        return obj
    if callable(getattr(obj, "process", None)):
        return FunctionOperator(obj.process)
    raise TypeError(f"{obj!r} has no process(message) method")
