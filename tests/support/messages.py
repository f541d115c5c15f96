"""Exact comparison of messages: kind, metadata, names, dtypes, shapes and bytes."""

from __future__ import annotations

from typing import Any

import numpy as np

from arroyo_core.message import Event, Message


def as_bytes(value: Any) -> bytes:
    """The C-order bytes of an array or buffer, the way they travel."""
    if isinstance(value, np.ndarray):
        return value.tobytes()
    return bytes(value)


def assert_same(sent: Message, got: Message) -> None:
    """``got`` is ``sent``, bit for bit: kind, metadata, names, dtypes, shapes, bytes."""
    assert type(got) is type(sent)
    assert got.meta == sent.meta
    if not isinstance(sent, Event):
        return
    assert isinstance(got, Event)
    assert list(got.payload) == list(sent.payload)
    for name, value in sent.payload.items():
        received = got.payload[name]
        if isinstance(value, np.ndarray):
            assert isinstance(received, np.ndarray), name
            assert received.dtype.str == value.dtype.str, name  # byte order included
            assert received.shape == value.shape, name
        else:
            assert not isinstance(received, np.ndarray), name
        assert as_bytes(received) == as_bytes(value), name


def assert_all_same(sent: list[Message], got: list[Message]) -> None:
    """``got`` is ``sent``, message by message (:func:`assert_same`), in the same order."""
    assert [m.kind for m in got] == [m.kind for m in sent]
    for one, other in zip(sent, got, strict=True):
        assert_same(one, other)
