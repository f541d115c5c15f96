"""Run plug-ins written against arroyopy's base classes unchanged, inside Arroyo's runtime.

arroyopy (the asyncio Arroyo toolset on PyPI) wires parts the other way round from Arroyo:
a listener is given the operator and awaits ``operator.process(message)``; an operator
publishes from inside ``process`` with ``await self.publish(message)``, which awaits
``publish`` on each of its ``publishers``; every hook is ``async def``. The adapters here
turn each into the Arroyo part the runtime expects, so the runtime's queue, ledger, error
counting and services apply to them:

- :class:`ArroyopyOperator`: ``process`` is awaited on the runtime's event loop; what it
  publishes is routed by the runtime like a returned result (checked, counted); what it
  returns is ignored, as arroyopy's listeners ignore it. Its own ``async start()`` runs
  before the first message and ``async stop()`` after the last.
- :class:`ArroyopyListener`: built with a stand-in operator whose ``process`` hands each
  message to the runtime; ``start`` runs on an event loop of its own in the receiving
  thread, ``stop`` is awaited there when the runtime stops.
- :class:`ArroyopyPublisher`: ``publish`` is awaited on an event loop in a thread of its own.

What a plug-in hands on is made an Arroyo message (:func:`to_message`): an Arroyo message
as it is; a pydantic model (arroyopy's ``Start``/``Stop``/``Event`` schemas) field by field,
arrays to the payload and the rest to ``meta``; bytes as an Event with payload ``data``.
Nothing here imports arroyopy: its classes are known by name and module.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .components import Deliver, Listener, Operator, Publisher
from .message import Event, Message, Payload, Start, Stop

log = logging.getLogger(__name__)

STOP_WAIT_S = 5.0  # how long a listener's start() may take to return once stop() was awaited


def is_arroyopy(cls: Any, base: str) -> bool:
    """Whether ``cls`` (a class) derives from arroyopy's class named ``base``."""
    return isinstance(cls, type) and any(
        klass.__name__ == base and klass.__module__.partition(".")[0] == "arroyopy"
        for klass in cls.__mro__)


def _own_hook(obj: Any, name: str) -> Callable[[], Any] | None:
    """``obj.name`` if a class outside arroyopy defines it (arroyopy's Operator.start is
    its own queue loop, not a hook), else None."""
    for klass in type(obj).__mro__:
        if name in vars(klass):
            return None if klass.__module__.partition(".")[0] == "arroyopy" else getattr(obj, name)
    return None


def to_message(obj: Any) -> Message:
    """The Arroyo message for what an arroyopy plug-in handed on (see the module docstring);
    a TypeError for anything else."""
    if isinstance(obj, Message):
        return obj
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return Event(payload={"data": obj})
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        fields = dump()
        payload: dict[str, Payload] = {key: value for key, value in fields.items()
                                       if isinstance(value, np.ndarray)}
        meta = {key: value for key, value in fields.items() if key not in payload}
        names = {klass.__name__ for klass in type(obj).__mro__}
        if "Start" in names:
            return Start(meta)
        if "Stop" in names:
            return Stop(meta)
        return Event(meta, payload)
    raise TypeError(f"cannot send a {type(obj).__name__}: expected an arroyo_core message "
                    "(Start, Event, Stop), a pydantic model or bytes")


class _Forward:
    """Stands in for an arroyopy operator's publishers: hands what it publishes to the
    Arroyo operator (whose runtime routes it)."""

    def __init__(self, operator: Operator) -> None:
        self.operator = operator

    async def publish(self, message: Any) -> None:
        self.operator.publish(to_message(message))


class ArroyopyOperator(Operator):
    """An arroyopy-style operator (``async def process``, ``await self.publish``) as an
    Arroyo Operator; the runtime wraps one in this by itself (see
    :func:`~arroyo_core.components.as_operator`)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        # An instance attribute: arroyopy's is one list on the class, shared by every operator.
        inner.publishers = [_Forward(self)]
        self._started = False

    def process(self, message: Message) -> Any:
        """A coroutine, which the runtime awaits on its event loop."""
        return self._process(message)

    async def _process(self, message: Message) -> None:
        if not self._started:
            self._started = True
            start = _own_hook(self.inner, "start")
            if start is not None:
                await start()
        await self.inner.process(message)

    def close(self) -> Any:
        """The plug-in's own ``stop()`` (awaitable), once it was started; the runtime calls
        this once the stream has drained."""
        stop = _own_hook(self.inner, "stop") if self._started else None
        return stop() if stop is not None else None


class _Hand:
    """The operator an arroyopy listener is given: ``process`` hands the message to the
    runtime (after :func:`to_message`); what cannot be sent is counted and logged once."""

    def __init__(self) -> None:
        self.deliver: Deliver | None = None
        self.received = 0
        self.malformed = 0
        self.publishers: list[Any] = []

    async def process(self, message: Any) -> None:
        self.received += 1
        try:
            converted = to_message(message)
        except TypeError:
            self.malformed += 1
            if self.malformed == 1:
                log.exception("listener handed on something that is not a message; further "
                              "ones are counted")
            return
        assert self.deliver is not None, "process() before start()"
        self.deliver(converted)


class ArroyopyListener(Listener):
    """An arroyopy-style listener (given ``operator``, ``async start/stop``) as an Arroyo
    Listener: ``ArroyopyListener(cls, *args, **kwargs)`` builds ``cls(*args,
    operator=..., **kwargs)``."""

    def __init__(self, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._hand = _Hand()
        self.inner = factory(*args, operator=self._hand, **kwargs)

    def start(self, deliver: Deliver) -> None:
        self._hand.deliver = deliver
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._run())
        finally:
            loop.close()

    async def _run(self) -> None:
        task = asyncio.ensure_future(self.inner.start())
        while not task.done() and not self.stop_requested.is_set():
            await asyncio.wait({task}, timeout=0.05)
        if not task.done():
            await self.inner.stop()
            await asyncio.wait({task}, timeout=STOP_WAIT_S)
            if not task.done():
                log.warning("%s.start() did not return within %.1f s of stop(); cancelled",
                            type(self.inner).__name__, STOP_WAIT_S)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return
        task.result()  # its failure is the listener's (the runtime logs it)

    def stats(self) -> dict[str, Any]:
        return {"link": type(self.inner).__name__, "received": self._hand.received,
                "malformed": {"not a message": self._hand.malformed}
                if self._hand.malformed else {}}


class ArroyopyPublisher(Publisher):
    """An arroyopy-style publisher (``async def publish``) as an Arroyo Publisher; its
    coroutines run on an event loop in a thread of its own, opened with the publisher."""

    def __init__(self, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.inner = factory(*args, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.sent = 0

    def open(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="arroyopy-publisher")
        self._thread.start()

    def publish(self, message: Message) -> None:
        if self._loop is None:
            self.open()
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self.inner.publish(message), self._loop).result()
        self.sent += 1

    def close(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()
            self._loop = None

    def stats(self) -> dict[str, Any]:
        return {"link": type(self.inner).__name__, "sent": self.sent}


ADAPTERS: dict[str, tuple[str, type]] = {"listener": ("Listener", ArroyopyListener),
                                         "publisher": ("Publisher", ArroyopyPublisher)}


def adapt(kind: str, factory: Any) -> Any:
    """``factory`` as it is, or, for an arroyopy listener or publisher class, a factory of
    its adapter that takes the same arguments (but ``operator``, which the adapter gives)."""
    base, adapter = ADAPTERS.get(kind, ("", None))
    if adapter is None or not is_arroyopy(factory, base):
        return factory

    def make(*args: Any, **kwargs: Any) -> Any:
        return adapter(factory, *args, **kwargs)

    signature = inspect.signature(factory)
    make.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for p in signature.parameters.values() if p.name != "operator"])
    make.__name__ = make.__qualname__ = factory.__name__
    make.__doc__ = factory.__doc__
    return make
