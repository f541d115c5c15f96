"""What a message's metadata may hold on the wire (docs/protocol.md 3.1), and the one
msgpack packer that writes it: :mod:`arroyo_core.wire` encodes headers with it, and
:func:`check_meta` applies the same rules to metadata alone, without a header or payload.
"""

from __future__ import annotations

import reprlib
import threading
from typing import Any

import msgpack
import numpy as np

from .errors import EncodeError
from .message import Message

# Error details show values through a bounded repr: a header may nest 1000 deep (plain
# repr raises RecursionError) or hold a megabyte string.
_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother = 3, 60, 60
show = _repr.repr


def _to_builtin(obj: Any) -> Any:
    """msgpack fallback: numpy scalars and small sequences in metadata become plain types."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"metadata value of type {type(obj).__name__} is not msgpack-serialisable")


_packers = threading.local()


def packer() -> msgpack.Packer:
    """This thread's Packer: msgpack.packb builds (and allocates a buffer for) a new one
    per call, which costs as much as packing a small header. A Packer resets itself after
    each pack, also one that raised, but is not safe to share between threads."""
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(use_bin_type=True, default=_to_builtin)
    return packer


def check_meta(message: Message, max_bytes: int) -> None:
    """Raise EncodeError unless the wire can carry ``message.meta`` in at most
    ``max_bytes``: packed by the encoder's own packer, then its keys checked."""
    meta = message.meta
    if not isinstance(meta, dict):
        raise EncodeError(f"{message.kind}: meta is a {type(meta).__name__}, not a dict")
    try:
        packed = packer().pack(meta)
    except (TypeError, ValueError, OverflowError) as exc:
        raise meta_error(message, exc) from exc
    if len(packed) > max_bytes:
        raise EncodeError(f"{message.kind} metadata of {len(packed)} bytes: a receiver takes "
                          f"a header of at most {max_bytes} bytes")
    check_keys(message)


def check_keys(message: Message) -> None:
    """Raise EncodeError if a map key in ``message.meta``, at any depth, is not a str.
    Call it once msgpack has packed the metadata: the walk is then over a structure found
    finite and at most 512 deep (the packer itself writes any hashable key it can pack)."""
    bad = non_str_key(message.meta)
    if bad is not None:
        raise EncodeError(f"{message.kind} metadata: map key {show(bad[0])} is a "
                          f"{type(bad[0]).__name__}; map keys must be str (docs/protocol.md 3.1)")


_NESTED = (dict, list, tuple)
_STR = frozenset([str])
_SCALARS = frozenset([str, int, float, bool, bytes, type(None)])


def non_str_key(meta: dict[Any, Any]) -> tuple[Any] | None:
    """``(key,)`` for the first map key in ``meta``, at any depth, that is not a str; None
    if every key is a str."""
    # The usual metadata, str keys and plain values, in C loops: a third of the walk's cost.
    if _STR.issuperset(map(type, meta)) and _SCALARS.issuperset(map(type, meta.values())):
        return None
    stack: list[Any] = [meta]
    while stack:  # a loop, not recursion (msgpack nests deeper than Python recurses)
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if not isinstance(key, str):
                    return (key,)
                if isinstance(value, _NESTED):
                    stack.append(value)
        else:
            stack.extend(value for value in item if isinstance(value, _NESTED))
    return None


_PACKABLE = (str, int, float, bool, bytes, bytearray, type(None), np.generic)
_CONTAINERS = (dict, list, tuple, set, frozenset)


def meta_error(message: Message, exc: Exception) -> EncodeError:
    """The EncodeError for metadata the packer refused, naming the value where it can."""
    found = _unpackable(message.meta)
    if found is None:
        return EncodeError(f"{message.kind} metadata: {exc}")
    path, what = found
    return EncodeError(f"{message.kind} metadata: meta{path} is {what}; metadata holds str, "
                       "int, float, bool, None, bytes, lists and maps with str keys "
                       "(docs/protocol.md 3.1)")


def _unpackable(meta: Any) -> tuple[str, str] | None:
    """(path, what it is) of the first value in ``meta`` msgpack cannot carry: the error
    path only, so a plain walk (the packer has already refused something)."""
    stack: list[tuple[str, Any, int]] = [("", meta, 0)]
    while stack:
        path, item, depth = stack.pop()
        if isinstance(item, dict):
            entries = [(f"[{key!r}]", value) for key, value in item.items()]
        elif isinstance(item, _CONTAINERS):
            entries = [(f"[{index}]", value) for index, value in enumerate(item)]
        else:
            continue
        for suffix, value in reversed(entries):
            if isinstance(value, _CONTAINERS):
                if depth < 600:  # deeper than msgpack packs: the error says so already
                    stack.append((path + suffix, value, depth + 1))
            elif not isinstance(value, _PACKABLE):
                name = type(value).__name__
                article = "an" if name[:1].lower() in "aeiou" else "a"
                return path + suffix, f"{article} {name} ({show(value)})"
            elif isinstance(value, int) and not -2**63 <= value < 2**64:
                return path + suffix, f"an int beyond 64 bits ({show(value)})"
            elif isinstance(value, str):
                try:
                    value.encode()
                except UnicodeEncodeError:
                    return path + suffix, f"a str that is not valid UTF-8 ({show(value)})"
    return None
