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
from .metadata import check_keys, check_meta, meta_error, packer
from .metadata import show as _show

VERSION = 1
RAW_BYTES = "bytes"
ALLOWED_KINDS = frozenset("biufcmMSU")  # never object ("O") or void ("V")
# A datetime unit's multiplier may not be 0 (numpy accepts "[0s]", then fails on the values).
_DTYPE_STR = re.compile(r"^[<>|][biufcmMSU][0-9]{1,6}(\[([1-9][0-9]*)?[a-zA-Z]+\])?$")

_BYTE = np.dtype(np.uint8)  # a dtype object, not the type: view() converts the type each call


@dataclass(frozen=True)
class Limits:
    """What a decoder accepts; anything bigger is rejected before it is allocated."""

    max_message_bytes: int = 256 * 2**20
    max_header_bytes: int = 2**20
    max_arrays: int = 64
    max_ndim: int = 32
    max_batch_events: int = 4096


DEFAULT_LIMITS = Limits()


class Envelope(NamedTuple):
    """What the header says about the sending side, beside the message itself."""

    src: str
    seq: int
    time: float


def _array_frame(value: Payload) -> tuple[list[Any], Any]:
    """Return (descriptor, buffer) for one payload entry, without copying when contiguous."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        if isinstance(value, memoryview):
            value = value.cast("B") if value.c_contiguous else memoryview(value.tobytes())
        buffer = value
        return [RAW_BYTES, [len(buffer)]], buffer
    array = np.asarray(value)
    problem = _dtype_problem(array.dtype)
    if problem is not None:
        raise EncodeError(problem)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)  # the one copy we cannot avoid
    # A flat uint8 view is accepted by every socket, whatever the dtype (datetime
    # arrays, for one, do not export the buffer protocol).
    return [array.dtype.str, list(array.shape)], array.ravel().view(_BYTE)


def encode(message: Message, *, src: str, seq: int, time: float | None = None) -> list[Any]:
    """Return the frames of ``message``: ``[header, *buffers]``.

    Buffers are views on the message's own arrays; send them with ``copy=False``.
    """
    if not (isinstance(src, str) and isinstance(seq, int) and 0 <= seq < 2**64
            and isinstance(message.meta, dict)):
        raise EncodeError(f"{message.kind}: needs a str src, an int seq in [0, 2**64) and a "
                          f"dict meta, got {src!r}, {seq!r}, {type(message.meta).__name__}")
    descriptors = []
    frames: list[Any] = [b""]
    if isinstance(message, Event):
        for name, value in message.payload.items():
            if not isinstance(name, str):
                raise EncodeError(f"payload name {name!r} is not a str")
            descriptor, buffer = _array_frame(value)
            descriptors.append([name, *descriptor])
            frames.append(buffer)
    header = {
        "v": VERSION,
        "kind": message.kind,
        "src": src,
        "seq": int(seq),
        "time": _time.time() if time is None else float(time),
        "meta": message.meta,
        "arrays": descriptors,
    }
    try:
        frames[0] = packer().pack(header)
    except (TypeError, ValueError, OverflowError) as exc:
        raise meta_error(message, exc) from exc
    check_keys(message)
    return frames


def check(message: Message) -> None:
    """Raise EncodeError if :func:`encode` would refuse ``message``, or a decoder with the
    default :class:`Limits` reject it, without encoding its payload: the metadata (packed
    by the encoder's packer, so by the same rules) and its size, and each payload entry's
    name and dtype.

    What an in-process runtime checks (arroyo_core.results), so an operator that passes in
    one process also goes over the wire. It costs about a microsecond for the usual small
    metadata (``python benchmarks/runtime_checks.py``) and never touches the arrays' data.
    """
    check_meta(message, DEFAULT_LIMITS.max_header_bytes - _HEADER_ROOM)
    if isinstance(message, Event):
        payload = message.payload
        if not isinstance(payload, dict):
            raise EncodeError(f"event payload is a {type(payload).__name__}, not a dict")
        if len(payload) > DEFAULT_LIMITS.max_arrays:
            raise EncodeError(f"event payload of {len(payload)} entries: a receiver takes "
                              f"at most {DEFAULT_LIMITS.max_arrays}")
        for name, value in payload.items():
            if not isinstance(name, str):
                raise EncodeError(f"payload name {_show(name)} is not a str")
            if isinstance(value, np.ndarray):
                dtype = value.dtype
                if dtype.kind in _PLAIN_KINDS and dtype.itemsize:
                    continue  # the common case, without a call
                problem = _dtype_problem(dtype)
            elif isinstance(value, (bytes, bytearray, memoryview)):
                continue
            else:  # what encode sends through np.asarray: a numpy or Python scalar, a list
                problem = _dtype_problem(np.asarray(value).dtype)
            if problem is not None:
                raise EncodeError(f"payload {name!r}: {problem}")


_HEADER_ROOM = 4096  # the header's other keys and the array descriptors, besides meta
_PLAIN_KINDS = frozenset("biufc")  # every size of these has a wire form


def _dtype_problem(dtype: np.dtype) -> str | None:
    """Why an array of ``dtype`` cannot be sent, or None if it can."""
    if dtype.kind not in ALLOWED_KINDS or dtype.itemsize == 0:
        return f"dtype {dtype} cannot be sent (allowed kinds: biufcmMSU)"
    if dtype.kind in "SUmM" and not _DTYPE_STR.match(dtype.str):
        return f"dtype {dtype.str} has no wire form (size over 6 digits?)"
    if dtype.kind == "M" and np.datetime_data(dtype)[0] == "generic":
        # a count of no unit since 1970: numpy cannot even print one that is not NaT
        return f"dtype {dtype.str} is a datetime64 without a unit"
    return None


_dtype_cache: dict[str, np.dtype] = {}


def _parse_dtype(text: Any) -> np.dtype | None:
    """Return the dtype named by ``text`` (None for raw bytes) or raise DecodeError."""
    if text == RAW_BYTES:
        return None
    dtype = _dtype_cache.get(text) if isinstance(text, str) else None
    if dtype is not None:
        return dtype
    if not isinstance(text, str) or not _DTYPE_STR.match(text):
        raise DecodeError("dtype", f"dtype {_show(text)} is not an allowed numpy dtype string")
    try:
        dtype = np.dtype(text)
    except TypeError as exc:
        raise DecodeError("dtype", f"dtype {text!r}: {exc}") from None
    problem = _dtype_problem(dtype)
    if problem is not None:
        raise DecodeError("dtype", problem)
    if dtype.str != text:
        # Only numpy's own spelling: '|u2' would mean the receiver's native byte order.
        raise DecodeError("dtype", f"dtype {text!r} is not canonical (numpy writes {dtype.str!r})")
    if len(_dtype_cache) < 1024:
        _dtype_cache[text] = dtype
    return dtype


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError("msgpack", f"header holds msgpack extension type {code}")


def _holds_timestamp(raw: bytes, header: Any) -> bool:
    """True if msgpack decoded a timestamp (extension -1): it does so without ``ext_hook``."""
    # Each encoding's prefix ends in 0xff (type -1), a byte headers seldom hold: one quick
    # single-byte search first spares the three slower two-byte ones nearly always.
    if 0xFF not in raw or not (b"\xd6\xff" in raw or b"\xd7\xff" in raw
                               or b"\xc7\x0c\xff" in raw):
        return False  # none of the three timestamp encodings occurs: the common case
    stack = [header]
    while stack:  # a loop, not recursion: msgpack nests deeper than Python recurses
        item = stack.pop()
        if isinstance(item, msgpack.Timestamp):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _bin_key(raw: bytes, header: Any, skip: Any = None) -> tuple[bytes] | None:
    """``(key,)`` for a bin map key anywhere in the header (but in ``skip``), else None.

    msgpack-python's ``strict_map_key`` lets str and bin keys through; only str is allowed
    (docs/protocol.md 3.1), so that a message forwarded as decoded obeys the rule too.
    """
    # A bin key needs a bin prefix byte (0xc4, 0xc5 or 0xc6) somewhere in the frame; most
    # headers hold none of the three, and then there is nothing to walk. (An int is found
    # in bytes several times quicker than a one-byte bytes.)
    if 0xC4 not in raw and 0xC5 not in raw and 0xC6 not in raw:
        return None
    stack = [header]
    while stack:  # a loop, not recursion, as in _holds_timestamp
        item = stack.pop()
        if item is skip:
            continue
        if isinstance(item, dict):
            for key in item:
                if isinstance(key, bytes):
                    return (key,)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def bin_key_error(frame: Any, item: Any) -> DecodeError | None:
    """The DecodeError for a bin map key in ``item``, part of the header ``frame``, or None."""
    raw = frame if isinstance(frame, bytes) else bytes(frame)
    bin_key = _bin_key(raw, item)
    if bin_key is None:
        return None
    return DecodeError("msgpack", f"header holds the bin map key {_show(bin_key[0])}; "
                       "map keys must be str")


def _header(frame: Any, limits: Limits, batch_keys_later: bool = False) -> dict[str, Any]:
    if len(frame) > limits.max_header_bytes:
        raise DecodeError("size", f"header of {len(frame)} bytes exceeds {limits.max_header_bytes}")
    try:
        header = msgpack.unpackb(frame, raw=False, ext_hook=_reject_ext)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise DecodeError("msgpack", f"header is not valid msgpack ({exc})") from None
    raw = frame if isinstance(frame, bytes) else bytes(frame)
    if _holds_timestamp(raw, header):
        raise DecodeError("msgpack", "header holds msgpack extension type -1 (timestamp)")
    # A batch's reader checks its Events' metadata for bin keys one by one, quicker than
    # this walk (it finds a bin prefix byte in most batches: frame numbers hold them).
    events = (header.get("events") if batch_keys_later and isinstance(header, dict)
              and header.get("kind") == "batch" else None)
    skip = events if isinstance(events, list) else None
    bin_key = _bin_key(raw, header, skip)
    if bin_key is not None:
        raise DecodeError("msgpack", f"header holds the bin map key {_show(bin_key[0])}; "
                          "map keys must be str")
    if not isinstance(header, dict):
        raise DecodeError("header", f"header is a {type(header).__name__}, not a map")
    version = header.get("v")
    if type(version) is not int or version != VERSION:
        error = bin_key_error(raw, skip) if skip is not None else None
        raise error or DecodeError("version", f"protocol version {_show(version)} is not "
                                   f"{VERSION}")
    return header


def decode(frames: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> tuple[Message, Envelope]:
    """Return the Message and Envelope that ``frames`` (bytes or zmq Frames) carry.

    Raises DecodeError, and nothing else, for any input that is not a valid message (a
    batch of events, too: :func:`arroyo_core.batch.decode_all` reads those).
    """
    return message_from(read_header(frames, limits), frames, limits)


def read_header(frames: Sequence[Any], limits: Limits, batch_keys_later: bool = False,
                ) -> dict[str, Any]:
    """The header map of ``frames``, after the checks every kind of message shares (size,
    msgpack, map keys, version); DecodeError otherwise. ``batch_keys_later``: a batch's
    ``events`` are not checked for bin map keys here; its reader does (see
    :func:`arroyo_core.batch.decode_batch`)."""
    if not frames:
        raise DecodeError("frames", "no frames")
    total = sum(map(len, frames))
    if total > limits.max_message_bytes:
        raise DecodeError("size", f"message of {total} bytes exceeds {limits.max_message_bytes}")
    return _header(frames[0], limits, batch_keys_later)


def envelope_of(header: dict[str, Any]) -> Envelope:
    """The header's ``src``, ``seq`` and ``time``, checked."""
    src, seq, sent = header.get("src"), header.get("seq"), header.get("time")
    if not (isinstance(src, str) and type(seq) is int and seq >= 0 and isinstance(sent, float)):
        raise DecodeError("header", "header fields src/seq/time missing or mistyped")
    return Envelope(src, seq, sent)


def message_from(header: dict[str, Any], frames: Sequence[Any], limits: Limits,
                 ) -> tuple[Message, Envelope]:
    """The message of a (single-message) header read by :func:`read_header`."""
    kind, meta, arrays = header.get("kind"), header.get("meta"), header.get("arrays")
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DecodeError("header", f"unknown message kind {_show(kind)}")
    if not (isinstance(meta, dict) and isinstance(arrays, list)):
        raise DecodeError("header", "header fields meta/arrays/src/seq/time missing or mistyped")
    envelope = envelope_of(header)
    if len(arrays) > limits.max_arrays:
        raise DecodeError("size", f"{len(arrays)} arrays exceed the limit of {limits.max_arrays}")
    if len(arrays) != len(frames) - 1:
        raise DecodeError("frames",
                          f"header names {len(arrays)} arrays, {len(frames) - 1} frames came")
    if arrays and cls is not Event:
        raise DecodeError("header", f"a {kind} message carries no arrays")
    if cls is not Event:
        return cls(meta=meta), envelope
    payload: dict[str, Payload] = {}
    for descriptor, frame in zip(arrays, frames[1:], strict=True):
        name, dtype, shape, expected = parse_descriptor(descriptor, limits)
        payload[name] = array_view(name, dtype, shape, expected, memoryview(frame))
    if len(payload) != len(arrays):
        raise DecodeError("header", "two arrays have the same name")
    return Event(meta=meta, payload=payload), envelope


def parse_descriptor(descriptor: Any, limits: Limits,
                     ) -> tuple[str, np.dtype | None, list[int], int]:
    """``(name, dtype, shape, nbytes)`` of an array descriptor (dtype None: raw bytes)."""
    if not (isinstance(descriptor, list) and len(descriptor) == 3
            and isinstance(descriptor[0], str) and isinstance(descriptor[2], list)):
        raise DecodeError("header",
                          f"array descriptor {_show(descriptor)} is not [name, dtype, shape]")
    name, dtype_text, shape = descriptor
    dtype = _parse_dtype(dtype_text)
    if (len(shape) > limits.max_ndim or not all(type(n) is int and n >= 0 for n in shape)
            or (dtype is None and len(shape) != 1)):
        raise DecodeError("shape", f"array {_show(name)}: shape {_show(shape)} is not a list "
                          "of sizes (one size for bytes)")
    expected = shape[0] if dtype is None else dtype.itemsize * math.prod(shape)
    # An empty array may claim no more extent than a full one could have: shape (2**54, 0)
    # costs no bytes to send, but numpy cannot reshape to 2**63 and iterating it never ends.
    if expected == 0 and dtype is not None and (
            dtype.itemsize * math.prod(n for n in shape if n)
            > min(limits.max_message_bytes, 2**63 - 1)):
        raise DecodeError("shape", f"array {_show(name)}: empty, but shape {_show(shape)} "
                          "is larger than a message may be")
    return name, dtype, shape, expected


def array_view(name: str, dtype: np.dtype | None, shape: list[int], expected: int,
               buffer: memoryview) -> Payload:
    """A read-only array (or memoryview for raw bytes) on ``buffer``, which must hold
    exactly ``expected`` bytes."""
    buffer = buffer.toreadonly()  # zmq Frames are writable; Event promises read-only
    if buffer.nbytes != expected:
        raise DecodeError("length", f"array {_show(name)}: {dtype or RAW_BYTES} {_show(shape)} "
                          f"needs {expected} bytes, frame has {buffer.nbytes}")
    if dtype is None:
        return buffer
    array = np.ndarray(shape, dtype, buffer)  # a read-only view, as frombuffer+reshape but quicker
    if dtype.kind == "U" and expected and _max_code_point(buffer, dtype) > 0x10FFFF:
        raise DecodeError("value", f"array {_show(name)}: a character is beyond U+10FFFF")
    return array


def _max_code_point(buffer: memoryview, dtype: np.dtype) -> int:
    """numpy stores 'U' text as UCS-4; a unit beyond U+10FFFF cannot be read back as str."""
    return int(np.frombuffer(buffer, f"{dtype.byteorder}u4").max())
