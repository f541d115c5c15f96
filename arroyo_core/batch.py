"""Batches: many small Events in one message, split again on receipt (docs/protocol.md
section 9).

A message costs a fixed amount of CPU whatever its size (a send, a receive, a header to
pack and unpack: about 20 us across a hop here, shared/PERFORMANCE.md), so Events of a
few KiB are bound by their count, not their bytes. An :class:`EventBatch` gathers them as
one header (the Events' metadata and array descriptors) and one data frame (their arrays,
copied back to back); :func:`decode_all` gives back each Event with its own sequence
number, so ledgers count Events, never batches.

When to send a batch is the output link's decision (:class:`arroyo_core.link.OutputLink`):
when it is full, when its first Event has waited ``batch_delay``, and whenever the runtime
has nothing more queued (``flush``), so a slow stream is never held back.
"""

from __future__ import annotations

import time as _time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import DecodeError, EncodeError
from .message import Event, Message
from .metadata import check_keys, meta_error, non_str_key, packer
from .metadata import show as _show
from .wire import (
    _PLAIN_KINDS,
    VERSION,
    Envelope,
    Limits,
    _array_frame,
    array_view,
    bin_key_error,
    envelope_of,
    message_from,
    parse_descriptor,
    read_header,
)

BATCH = "batch"  # the header's kind
ALIGN = 8  # each array starts at a multiple of this in the data frame, so views are aligned
# Events whose payload is below this go in batches: it is pyzmq's copy threshold too, so
# copying such an Event into a batch costs what sending it alone copies anyway.
BATCH_EVENT_BYTES = 2**16
_PADDING = bytes(ALIGN)
_PAIR = b"\x92"  # msgpack: an array of 2
_ARRAY_HEADERS = [bytes([0x90 + n]) for n in range(16)]  # msgpack: an array of n < 16
# Packed array descriptors by (name, dtype, shape): a stream's Events mostly repeat a few.
_DESCRIPTORS: dict[tuple[Any, np.dtype, tuple[int, ...]], bytes] = {}
_MAX_DESCRIPTORS = 1024


def _descriptor(name: Any, value: np.ndarray) -> bytes | None:
    """The packed descriptor ``[name, dtype, shape]`` of a C-contiguous array, kept in
    the table; None for an array the quick path does not take (a dtype of a kind that
    needs checking, or long doubles in the other byte order, which have no buffer)."""
    dtype = value.dtype
    if dtype.kind not in _PLAIN_KINDS or dtype.char in "gG":
        return None
    if not isinstance(name, str):
        raise EncodeError(f"payload name {_show(name)} is not a str")
    packed = packer().pack([name, dtype.str, list(value.shape)])
    if len(_DESCRIPTORS) >= _MAX_DESCRIPTORS:
        _DESCRIPTORS.clear()  # a stream of ever new shapes: start the table again
    _DESCRIPTORS[(name, dtype, value.shape)] = packed
    return packed


class EventBatch:
    """Events held back to be sent as one message: their packed entries and their data.

    :meth:`add` does all the encoding work of an Event (so an Event the wire cannot
    carry fails when it is published, as it would alone) and copies its arrays, so the
    caller may reuse them at once.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._entries: list[bytes] = []
        self._data = bytearray()
        self.began = 0.0  # time.monotonic() of the first event

    def __len__(self) -> int:
        return len(self.events)

    def due(self, most: int, most_bytes: int, delay: float) -> bool:
        """True once the batch holds ``most`` Events or ``most_bytes`` of data, or its
        first Event has waited ``delay`` seconds (one call per Event published)."""
        return (len(self.events) >= most or len(self._data) >= most_bytes
                or _time.monotonic() - self.began >= delay)

    @property
    def nbytes(self) -> int:
        """Bytes of the data frame so far."""
        return len(self._data)

    def add(self, event: Event) -> bool:
        """Encode ``event`` into the batch; False if its payload is too big for a batch
        (:data:`BATCH_EVENT_BYTES` or more), EncodeError, as :func:`~arroyo_core.wire.encode`
        raises it, if the wire cannot carry it (the batch is unchanged in both cases)."""
        # The usual Event, C-contiguous arrays of plain dtypes, takes the quick path: each
        # array's packed descriptor comes from a table, so the Event costs one pack (its
        # metadata) and one copy per array; anything else takes the general path.
        parts, buffers, total = [], [], 0
        for name, value in event.payload.items():
            if value.__class__ is not np.ndarray or not value.flags.c_contiguous:
                return self._add_any(event)
            packed = _DESCRIPTORS.get((name, value.dtype, value.shape))
            if packed is None:
                packed = _descriptor(name, value)
                if packed is None:
                    return self._add_any(event)
            parts.append(packed)
            buffers.append(value.data)
            total += value.nbytes
        if total >= BATCH_EVENT_BYTES:
            return False
        pack = packer().pack
        try:
            meta = pack(event.meta)
        except (TypeError, ValueError, OverflowError) as exc:
            raise meta_error(event, exc) from exc
        check_keys(event)
        # [meta, descriptors] as msgpack writes it: the bytes of packing the pair whole
        self._keep(event, b"".join([_PAIR, meta, _ARRAY_HEADERS[len(parts)], *parts])
                   if len(parts) < 16 else _PAIR + meta + packer().pack_array_header(
                       len(parts)) + b"".join(parts), buffers)
        return True

    def _add_any(self, event: Event) -> bool:
        """:meth:`add` for any Event: scalars, lists, bytes, strided arrays, any dtype."""
        try:
            if event.nbytes >= BATCH_EVENT_BYTES:
                return False  # before any work: a big Event is encoded once, alone
        except AttributeError:
            pass  # a Python scalar or list (encode makes an array of it): taken as small
        descriptors, buffers = [], []
        for name, value in event.payload.items():
            if not isinstance(name, str):
                raise EncodeError(f"payload name {_show(name)} is not a str")
            descriptor, flat = _array_frame(value)
            descriptors.append([name, *descriptor])
            buffers.append(memoryview(flat))  # (an ndarray would add itself to the bytearray)
        try:
            entry = packer().pack([event.meta, descriptors])
        except (TypeError, ValueError, OverflowError) as exc:
            raise meta_error(event, exc) from exc
        check_keys(event)
        self._keep(event, entry, buffers)
        return True

    def _keep(self, event: Event, entry: bytes, buffers: list[Any]) -> None:
        data = self._data
        for buffer in buffers:
            data += buffer
            pad = -len(data) % ALIGN
            if pad:
                data += _PADDING[:pad]
        if not self.events:
            self.began = _time.monotonic()
        self.events.append(event)
        self._entries.append(entry)

    def frames(self, *, src: str, seq: int, time: float | None = None) -> list[Any]:
        """The batch's frames, ``[header, data]``, its first Event numbered ``seq``."""
        pack = packer().pack
        fields = (("v", VERSION), ("kind", BATCH), ("src", src), ("seq", int(seq)),
                  ("time", _time.time() if time is None else float(time)))
        header = b"".join([packer().pack_map_header(len(fields) + 1),
                           *(pack(key) + pack(value) for key, value in fields),
                           pack("events"), packer().pack_array_header(len(self._entries)),
                           *self._entries])
        return [header, self._data]

    def clear(self) -> list[Event]:
        """Empty the batch (its data frame may still be in flight: it is not reused);
        return the Events it held."""
        events = self.events
        self.events, self._entries, self._data = [], [], bytearray()
        return events


def decode_all(frames: Sequence[Any], limits: Limits) -> list[tuple[Message, Envelope]]:
    """Every message ``frames`` carry, with its envelope: one, or each Event of a batch.

    Raises DecodeError for anything that is not a valid message or batch; a batch is
    valid or rejected whole.
    """
    messages, (src, seq, sent) = decode_batch(frames, limits)
    return [(message, Envelope(src, seq + index, sent))
            for index, message in enumerate(messages)]


def decode_batch(frames: Sequence[Any], limits: Limits) -> tuple[list[Message], Envelope]:
    """:func:`decode_all` without an envelope per message: the messages, and the first
    one's envelope (the next ones are numbered on from its ``seq``)."""
    header = read_header(frames, limits, batch_keys_later=True)
    if header.get("kind") != BATCH:
        message, envelope = message_from(header, frames, limits)
        return [message], envelope
    try:
        return _events(header, frames, limits)
    except DecodeError:
        # What a walk of the whole header would have found first (read_header left the
        # Events' bin keys to _events, which checks them only as far as it read).
        error = bin_key_error(frames[0], header.get("events"))
        if error is not None:
            raise error from None
        raise


def _events(header: dict[str, Any], frames: Sequence[Any], limits: Limits,
            ) -> tuple[list[Message], Envelope]:
    envelope = envelope_of(header)
    entries = header.get("events")
    if not isinstance(entries, list) or not entries:
        raise DecodeError("header", "a batch's events must be a non-empty array")
    if len(entries) > limits.max_batch_events:
        raise DecodeError("size", f"a batch of {len(entries)} events exceeds the limit of "
                          f"{limits.max_batch_events}")
    if envelope.seq + len(entries) > 2**64:
        raise DecodeError("header", f"a batch of {len(entries)} events from seq "
                          f"{envelope.seq} numbers past 2**64")
    if len(frames) != 2:
        raise DecodeError("frames", f"a batch comes in 2 frames (header, data), "
                          f"{len(frames)} came")
    data = memoryview(frames[1]).toreadonly()  # slices and arrays on it are read-only too
    size = data.nbytes
    offset = 0
    events: list[Message] = []
    seen: list[Any] = []  # the descriptors of the entry before, and what they say
    parsed: list[tuple[str, np.dtype | None, list[int], int]] = []
    for index, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], dict)
                and isinstance(entry[1], list)):
            raise DecodeError("header", f"batch entry {index} is not [meta, arrays]")
        meta, arrays = entry
        if non_str_key(meta) is not None:  # a bin key (msgpack gives str or bin keys)
            raise bin_key_error(frames[0], meta) or DecodeError("msgpack", "bin map key")
        if arrays == seen:  # as the entry before (the usual stream): checked there
            payload = {}
            for name, dtype, shape, nbytes in parsed:
                end = offset + nbytes
                if end > size:
                    raise DecodeError("length", f"batch entry {index}: array {_show(name)} "
                                      f"ends at byte {end} of a {size}-byte data frame")
                payload[name] = (np.ndarray(shape, dtype, data, offset)
                                 if dtype is not None and dtype.kind != "U"
                                 else array_view(name, dtype, shape, nbytes, data[offset:end]))
                offset = end + (-end % ALIGN)
            events.append(Event(meta=meta, payload=payload))
            continue
        if len(arrays) > limits.max_arrays:
            raise DecodeError("size", f"batch entry {index}: {len(arrays)} arrays exceed "
                              f"the limit of {limits.max_arrays}")
        payload, parsed = {}, []
        for descriptor in arrays:
            name, dtype, shape, nbytes = described = parse_descriptor(descriptor, limits)
            end = offset + nbytes
            if end > size:
                raise DecodeError("length", f"batch entry {index}: array {_show(name)} "
                                  f"ends at byte {end} of a {size}-byte data frame")
            payload[name] = array_view(name, dtype, shape, nbytes, data[offset:end])
            parsed.append(described)
            offset = end + (-end % ALIGN)
        if len(payload) != len(arrays):
            raise DecodeError("header", f"batch entry {index}: two arrays have the same name")
        seen = arrays
        events.append(Event(meta=meta, payload=payload))
    if offset != size:
        raise DecodeError("length", f"batch data frame has {size} bytes, its arrays "
                          f"(padded to {ALIGN}) take {offset}")
    return events, envelope
