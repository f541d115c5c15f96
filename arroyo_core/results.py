"""What an operator may hand back, checked the same way in one process and in a service.

Over the wire an operator receives read-only arrays (views on the received frames) and
its results are encoded, so a dict, an array or a datetime in metadata fails there. The
runtime applies the same rules everywhere, so an operator tested in one process
(``Runtime(MemoryListener(...), operator, [CollectingSink()])``) behaves the same as a
service:

- :func:`read_only` gives the operator read-only arrays and memoryviews, as decoding does;
- :func:`operator_results` takes what a hook returned and gives the Messages to route, or
  raises :class:`~arroyo_core.errors.ResultError` saying what came back and what should
  have: a Message, None or an iterable of Messages, each one the wire can carry
  (:func:`arroyo_core.wire.check`: metadata by the codec's own rules, payload dtypes; the
  arrays' data is never read or copied).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .components import FunctionOperator, Operator
from .errors import EncodeError, ResultError
from .message import Event, Message
from .wire import check

_ARTICLE = {"start": "a Start", "event": "an Event", "stop": "a Stop"}


def read_only(event: Event) -> None:
    """Replace each writable array or buffer of ``event``'s payload by a read-only view of
    it (no copy): what an operator receives over the wire. The caller's own arrays stay
    writable; only the payload's entries are replaced."""
    payload = event.payload
    for name, value in payload.items():  # assigning existing keys while iterating is safe
        if isinstance(value, np.ndarray):
            if value.flags.writeable:
                view = value.view()
                view.flags.writeable = False
                payload[name] = view
        elif isinstance(value, (bytes, bytearray)):
            payload[name] = memoryview(value).toreadonly()  # decode gives memoryviews
        elif isinstance(value, memoryview) and not value.readonly:
            payload[name] = value.toreadonly()


def hook_name(operator: Operator, message: Message) -> str:
    """How an error names the code that handled ``message``: ``Centroid.on_event``."""
    if isinstance(operator, FunctionOperator):
        process = operator.process
        return getattr(process, "__qualname__", None) or type(process).__name__
    cls = type(operator)
    if cls.process is Operator.process and message.kind in _ARTICLE:
        return f"{cls.__name__}.on_{message.kind}"
    return f"{cls.__name__}.process"


def _what(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a numpy array ({value.dtype} {value.shape})"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def operator_results(results: Any, operator: Operator, message: Message) -> list[Message]:
    """The Messages to route from what ``operator`` returned for ``message``; every one is
    checked before any is routed, so a bad result publishes nothing."""
    if results is None:
        return []
    if isinstance(results, Message):
        messages = [results]
    elif isinstance(results, (Mapping, np.ndarray, str, bytes, bytearray, memoryview)) or \
            not isinstance(results, Iterable):
        # Iterating a dict, an array or a str would make "messages" of its keys, rows or
        # characters: the mistake this check is for.
        raise ResultError(f"{hook_name(operator, message)} returned {_what(results)}; "
                          f"{_should(message)}")
    else:
        messages = list(results)
        for index, item in enumerate(messages):
            if not isinstance(item, Message):
                raise ResultError(f"{hook_name(operator, message)} returned "
                                  f"{_what(results)} whose item {index} is {_what(item)}; "
                                  f"{_should(message)}")
    for result in messages:
        if result is message:
            # Passed on as it came: a decoded message is carriable by construction, and the
            # metadata check (about as costly as encoding it) would double a forwarding
            # hop's per-message work. Metadata changed in place is still refused, by the
            # encoder of the link that sends it on.
            continue
        try:
            check(result)
        except EncodeError as exc:
            raise ResultError(f"{hook_name(operator, message)} returned {_what(result)} the "
                              f"wire cannot carry: {exc}") from None
    return messages


def checked_publish(operator: Operator, message: Any) -> Message:
    """``message`` if an operator may publish it from inside a hook, else ResultError."""
    if not isinstance(message, Message):
        raise ResultError(f"{type(operator).__name__}.publish was given {_what(message)}; "
                          "publish a Message (a Start, an Event or a Stop)")
    try:
        check(message)
    except EncodeError as exc:
        raise ResultError(f"{type(operator).__name__}.publish was given {_what(message)} "
                          f"the wire cannot carry: {exc}") from None
    return message


def _should(message: Message) -> str:
    return f"return {_ARTICLE.get(message.kind, 'a Message')}, None or a list of Messages"
