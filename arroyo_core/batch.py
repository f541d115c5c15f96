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
from .metadata import check_keys, meta_error, packer
from .metadata import show as _show
from .wire import (
    _PLAIN_KINDS,
    VERSION,
    Envelope,
    Limits,
    _array_frame,
    array_view,
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
_DTYPE_TEXT: dict[np.dtype, str] = {}  # plain dtypes are few: a bounded set


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

    @property
    def nbytes(self) -> int:
        """Bytes of the data frame so far."""
        return len(self._data)

    def add(self, event: Event) -> bool:
        """Encode ``event`` into the batch; False if its payload is too big for a batch
        (:data:`BATCH_EVENT_BYTES` or more), EncodeError, as :func:`~arroyo_core.wire.encode`
        raises it, if the wire cannot carry it (the batch is unchanged in both cases)."""
        try:
            if event.nbytes >= BATCH_EVENT_BYTES:
                return False  # before any work: a big Event is encoded once, alone
        except AttributeError:
            pass  # a Python scalar or list (encode makes an array of it): taken as small
        descriptors, buffers = [], []
        for name, value in event.payload.items():
            if not isinstance(name, str):
                raise EncodeError(f"payload name {_show(name)} is not a str")
            if (value.__class__ is np.ndarray and value.flags.c_contiguous
                    and value.dtype.kind in _PLAIN_KINDS
                    and value.dtype.char not in "gG"):  # the usual case, quicker
                # (long doubles in the other byte order have no buffer: the slow path)
                dtype = value.dtype
                text = _DTYPE_TEXT.get(dtype)
                if text is None:
                    text = _DTYPE_TEXT[dtype] = dtype.str  # a new string on every call
                descriptors.append([name, text, list(value.shape)])
                buffer = value.data
            else:
                descriptor, flat = _array_frame(value)
                descriptors.append([name, *descriptor])
                buffer = memoryview(flat)  # (an ndarray would add itself to the bytearray)
            buffers.append(buffer)
        try:
            entry = packer().pack([event.meta, descriptors])
        except (TypeError, ValueError, OverflowError) as exc:
            raise meta_error(event, exc) from exc
        check_keys(event)
        data = self._data
        for buffer in buffers:
            data += buffer
            data += _PADDING[:-len(data) % ALIGN]
        if not self.events:
            self.began = _time.monotonic()
        self.events.append(event)
        self._entries.append(entry)
        return True

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
    header = read_header(frames, limits)
    if header.get("kind") != BATCH:
        return [message_from(header, frames, limits)]
    src, seq, sent = envelope_of(header)
    entries = header.get("events")
    if not isinstance(entries, list) or not entries:
        raise DecodeError("header", "a batch's events must be a non-empty array")
    if len(entries) > limits.max_batch_events:
        raise DecodeError("size", f"a batch of {len(entries)} events exceeds the limit of "
                          f"{limits.max_batch_events}")
    if seq + len(entries) > 2**64:
        raise DecodeError("header", f"a batch of {len(entries)} events from seq {seq} "
                          "numbers past 2**64")
    if len(frames) != 2:
        raise DecodeError("frames", f"a batch comes in 2 frames (header, data), "
                          f"{len(frames)} came")
    data = memoryview(frames[1])
    offset = 0
    messages: list[tuple[Message, Envelope]] = []
    for index, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], dict)
                and isinstance(entry[1], list)):
            raise DecodeError("header", f"batch entry {index} is not [meta, arrays]")
        meta, arrays = entry
        if len(arrays) > limits.max_arrays:
            raise DecodeError("size", f"batch entry {index}: {len(arrays)} arrays exceed "
                              f"the limit of {limits.max_arrays}")
        payload = {}
        for descriptor in arrays:
            name, dtype, shape, nbytes = parse_descriptor(descriptor, limits)
            end = offset + nbytes
            if end > len(data):
                raise DecodeError("length", f"batch entry {index}: array {_show(name)} "
                                  f"ends at byte {end} of a {len(data)}-byte data frame")
            payload[name] = array_view(name, dtype, shape, nbytes, data[offset:end])
            offset = end + (-end % ALIGN)
        if len(payload) != len(arrays):
            raise DecodeError("header", f"batch entry {index}: two arrays have the same name")
        messages.append((Event(meta=meta, payload=payload), Envelope(src, seq + index, sent)))
    if offset != len(data):
        raise DecodeError("length", f"batch data frame has {len(data)} bytes, its arrays "
                          f"(padded to {ALIGN}) take {offset}")
    return messages
