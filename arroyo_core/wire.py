"""Wire format version 1: a msgpack header frame, then one raw frame per payload entry.

The codec turns a Message into a list of frames and back, and nothing else: no sockets
here, so ZeroMQ, Redis and a recording file all carry the same bytes. The format is
specified in ``docs/protocol.md``. Arrays are never copied: encoding hands out views on
the caller's buffers and decoding returns ``np.frombuffer`` views on the received frames.
"""

from __future__ import annotations

import math
import re
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack
import numpy as np

from .errors import DecodeError, EncodeError
from .message import KINDS, Event, Message, Payload

VERSION = 1
RAW_BYTES = "bytes"
ALLOWED_KINDS = frozenset("biufcmMSU")  # never object ("O") or void ("V")
_DTYPE_STR = re.compile(r"^[<>|][biufcmMSU][0-9]{1,6}(\[[0-9]*[a-zA-Z]+\])?$")


@dataclass(frozen=True)
class Limits:
    """What a decoder accepts; anything bigger is rejected before it is allocated."""

    max_message_bytes: int = 256 * 2**20
    max_header_bytes: int = 2**20
    max_arrays: int = 64
    max_ndim: int = 32


DEFAULT_LIMITS = Limits()


class Envelope(NamedTuple):
    """What the header says about the sending side, beside the message itself."""

    src: str
    seq: int
    time: float


def _to_builtin(obj: Any) -> Any:
    """msgpack fallback: numpy scalars and small sequences in metadata become plain types."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"metadata value of type {type(obj).__name__} is not msgpack-serialisable")


_packer_default = _to_builtin


def _array_frame(value: Payload) -> tuple[list[Any], Any]:
    """Return (descriptor, buffer) for one payload entry, without copying when contiguous."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        buffer = value if not isinstance(value, memoryview) else value.cast("B")
        return [RAW_BYTES, [len(buffer)]], buffer
    array = np.asarray(value)
    if array.dtype.kind not in ALLOWED_KINDS or array.dtype.itemsize == 0:
        raise EncodeError(f"dtype {array.dtype} cannot be sent (allowed kinds: biufcmMSU)")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)  # the one copy we cannot avoid
    # A flat uint8 view is accepted by every socket, whatever the dtype (datetime
    # arrays, for one, do not export the buffer protocol).
    return [array.dtype.str, list(array.shape)], array.reshape(-1).view(np.uint8)


def encode(message: Message, *, src: str, seq: int, time: float | None = None) -> list[Any]:
    """Return the frames of ``message``: ``[header, *buffers]``.

    Buffers are views on the message's own arrays; send them with ``copy=False``.
    """
    descriptors = []
    frames: list[Any] = [b""]
    if isinstance(message, Event):
        for name, value in message.payload.items():
            descriptor, buffer = _array_frame(value)
            descriptors.append([name, *descriptor])
            frames.append(buffer)
    header = {
        "v": VERSION,
        "kind": message.kind,
        "src": src,
        "seq": seq,
        "time": _time.time() if time is None else float(time),
        "meta": message.meta,
        "arrays": descriptors,
    }
    try:
        frames[0] = msgpack.packb(header, use_bin_type=True, default=_packer_default)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"{message.kind} metadata: {exc}") from exc
    return frames


_dtype_cache: dict[str, np.dtype] = {}


def _parse_dtype(text: Any) -> np.dtype | None:
    """Return the dtype named by ``text`` (None for raw bytes) or raise DecodeError."""
    if text == RAW_BYTES:
        return None
    dtype = _dtype_cache.get(text) if isinstance(text, str) else None
    if dtype is not None:
        return dtype
    if not isinstance(text, str) or not _DTYPE_STR.match(text):
        raise DecodeError("dtype", f"dtype {text!r} is not an allowed numpy dtype string")
    try:
        dtype = np.dtype(text)
    except TypeError as exc:
        raise DecodeError("dtype", f"dtype {text!r}: {exc}") from None
    if dtype.itemsize == 0 or dtype.kind not in ALLOWED_KINDS:
        raise DecodeError("dtype", f"dtype {text!r} is not allowed")
    if len(_dtype_cache) < 1024:
        _dtype_cache[text] = dtype
    return dtype


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError("msgpack", f"header holds msgpack extension type {code}")


def _header(frame: Any, limits: Limits) -> dict[str, Any]:
    if len(frame) > limits.max_header_bytes:
        raise DecodeError("size", f"header of {len(frame)} bytes exceeds {limits.max_header_bytes}")
    try:
        header = msgpack.unpackb(frame, raw=False, ext_hook=_reject_ext)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise DecodeError("msgpack", f"header is not valid msgpack ({exc})") from None
    if not isinstance(header, dict):
        raise DecodeError("header", f"header is a {type(header).__name__}, not a map")
    if header.get("v") != VERSION:
        raise DecodeError("version", f"protocol version {header.get('v')!r} is not {VERSION}")
    return header


def decode(frames: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> tuple[Message, Envelope]:
    """Return the Message and Envelope that ``frames`` (bytes or zmq Frames) carry.

    Raises DecodeError, and nothing else, for any input that is not a valid message.
    """
    if not frames:
        raise DecodeError("frames", "no frames")
    total = sum(len(f) for f in frames)
    if total > limits.max_message_bytes:
        raise DecodeError("size", f"message of {total} bytes exceeds {limits.max_message_bytes}")
    header = _header(frames[0], limits)
    kind, meta, arrays = header.get("kind"), header.get("meta"), header.get("arrays")
    src, seq, sent = header.get("src"), header.get("seq"), header.get("time")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DecodeError("header", f"unknown message kind {kind!r}")
    if not (isinstance(meta, dict) and isinstance(arrays, list) and isinstance(src, str)
            and type(seq) is int and isinstance(sent, float)):
        raise DecodeError("header", "header fields meta/arrays/src/seq/time missing or mistyped")
    if len(arrays) > limits.max_arrays:
        raise DecodeError("size", f"{len(arrays)} arrays exceed the limit of {limits.max_arrays}")
    if len(arrays) != len(frames) - 1:
        raise DecodeError("frames", f"header names {len(arrays)} arrays, {len(frames) - 1} frames came")
    if arrays and cls is not Event:
        raise DecodeError("header", f"a {kind} message carries no arrays")
    envelope = Envelope(src, seq, sent)
    if cls is not Event:
        return cls(meta=meta), envelope
    payload: dict[str, Payload] = {}
    for descriptor, frame in zip(arrays, frames[1:]):
        name, value = _array(descriptor, frame, limits)
        payload[name] = value
    return Event(meta=meta, payload=payload), envelope


def _array(descriptor: Any, frame: Any, limits: Limits) -> tuple[str, Payload]:
    if not (isinstance(descriptor, list) and len(descriptor) == 3
            and isinstance(descriptor[0], str) and isinstance(descriptor[2], list)):
        raise DecodeError("header", f"array descriptor {descriptor!r} is not [name, dtype, shape]")
    name, dtype_text, shape = descriptor
    dtype = _parse_dtype(dtype_text)
    if len(shape) > limits.max_ndim or not all(type(n) is int and n >= 0 for n in shape):
        raise DecodeError("shape", f"array {name!r}: shape {shape!r} is not a list of sizes")
    buffer = memoryview(frame)
    if dtype is None:
        expected = shape[0] if len(shape) == 1 else -1
    else:
        expected = dtype.itemsize * math.prod(shape)
    if buffer.nbytes != expected:
        raise DecodeError("length", f"array {name!r}: {dtype_text} {shape} needs {expected} bytes, frame has {buffer.nbytes}")
    if dtype is None:
        return name, buffer
    return name, np.frombuffer(buffer, dtype=dtype).reshape(shape)
