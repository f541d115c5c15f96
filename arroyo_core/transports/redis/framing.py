"""Redis carriage version 1: how the frames of ``wire.encode`` ride in Redis values.

ZeroMQ keeps frame boundaries; Redis stores one value per stream field or one value per
pub/sub message. This module maps the same frames (header, then one raw frame per array,
byte for byte as on ZeroMQ) onto those values and back, and nothing else: no Redis client
here. The layout is specified in ``docs/protocol.md`` (section 8).

- A stream entry holds the fields ``v`` (``b"1"``, this carriage's version), ``h`` (the
  header frame), then ``a0`` ... ``a{n-1}`` (the array frames), in that order.
- A pub/sub message is one value: ``b"ARF"``, version byte 1, frame count (uint32 LE),
  one uint64 LE length per frame, then the frames, each starting at an offset that is a
  multiple of 8 (zero padding between), so arrays decoded in place are aligned.

Received frames come back as memoryviews on the received bytes: ``wire.decode`` turns
them into numpy views without a copy.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import DecodeError

CARRIAGE_VERSION = b"1"
VERSION_FIELD, HEADER_FIELD = b"v", b"h"
PACKED_MAGIC = b"ARF\x01"  # three magic bytes and the carriage version
ALIGN = 8
_COUNT = struct.Struct("<I")
_MAX_FRAMES = 2**16  # far above any Limits.max_arrays; bounds the length table we read

_array_fields: list[bytes] = [f"a{i}".encode() for i in range(128)]


def _array_field(index: int) -> bytes:
    if index < len(_array_fields):
        return _array_fields[index]
    return f"a{index}".encode()


def _as_bytes_like(frame: Any) -> Any:
    """bytes stay bytes; a numpy frame becomes a flat memoryview (what redis-py accepts)."""
    if isinstance(frame, (bytes, memoryview)):
        return frame
    return memoryview(frame).cast("B") if not isinstance(frame, bytearray) else frame


def stream_fields(frames: Sequence[Any]) -> dict[bytes, Any]:
    """Return the field map of one stream entry carrying ``frames`` (no payload copy)."""
    fields = {VERSION_FIELD: CARRIAGE_VERSION, HEADER_FIELD: _as_bytes_like(frames[0])}
    for index, frame in enumerate(frames[1:]):
        fields[_array_field(index)] = _as_bytes_like(frame)
    return fields


def frames_from_fields(fields: Mapping[bytes, Any]) -> list[Any]:
    """Return the frames a stream entry carries; raise DecodeError if it is not carriage v1."""
    version = fields.get(VERSION_FIELD)
    if version != CARRIAGE_VERSION:
        raise DecodeError("carriage", f"stream entry has carriage version {version!r}, "
                          f"not {CARRIAGE_VERSION!r} (fields {sorted(fields)[:8]})")
    header = fields.get(HEADER_FIELD)
    if header is None:
        raise DecodeError("carriage", "stream entry has no 'h' (header) field")
    frames = [header]
    for index in range(len(fields) - 2):
        frame = fields.get(_array_field(index))
        if frame is None:
            raise DecodeError("carriage", f"stream entry fields {sorted(fields)[:8]} are not "
                              "v, h, a0, a1, ... without gaps")
        frames.append(frame)
    return frames


def _padded(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def packed_size(frames: Sequence[Any]) -> int:
    """Bytes that :func:`pack_frames` writes for ``frames``."""
    size = _padded(len(PACKED_MAGIC) + _COUNT.size + 8 * len(frames))
    for frame in frames:
        size += _padded(memoryview(frame).nbytes)
    return size


def pack_frames(frames: Sequence[Any], into: bytearray | None = None) -> memoryview:
    """Write ``frames`` as one pub/sub value; return a view on the bytes written.

    ``into`` is reused when it is large enough (a fresh buffer per message costs page faults
    for megabyte frames), so the view is only valid until the next call with the same buffer.
    """
    views = [memoryview(frame).cast("B") for frame in frames]
    lengths = [view.nbytes for view in views]
    prefix = len(PACKED_MAGIC) + _COUNT.size + 8 * len(views)
    size = _padded(prefix) + sum(_padded(n) for n in lengths)
    if into is None or len(into) < size:
        into = bytearray(size)
    out = memoryview(into)
    out[:4] = PACKED_MAGIC
    _COUNT.pack_into(out, 4, len(views))
    struct.pack_into(f"<{len(lengths)}Q", out, 8, *lengths)
    offset = _padded(prefix)
    out[prefix:offset] = bytes(offset - prefix)
    for view, n in zip(views, lengths, strict=True):
        out[offset:offset + n] = view
        end = _padded(offset + n)
        out[offset + n:end] = bytes(end - offset - n)
        offset = end
    return out[:size]


def unpack_frames(value: Any) -> list[memoryview]:
    """Return the frames of one pub/sub value as views on it; raise DecodeError if malformed."""
    data = memoryview(value).cast("B")
    total = data.nbytes
    if total < 8 or data[:4] != PACKED_MAGIC:
        head = bytes(data[:4])
        if total >= 4 and head[:3] == PACKED_MAGIC[:3]:
            raise DecodeError("carriage", f"pub/sub value has carriage version {head[3]}, not 1")
        raise DecodeError("carriage", f"pub/sub value does not start with {PACKED_MAGIC!r} "
                          f"(starts with {head!r})")
    (count,) = _COUNT.unpack_from(data, 4)
    prefix = 8 + 8 * count
    if count == 0 or count > _MAX_FRAMES or prefix > total:
        raise DecodeError("carriage", f"pub/sub value names {count} frames; it cannot hold them")
    lengths = struct.unpack_from(f"<{count}Q", data, 8)
    offset = _padded(prefix)
    frames = []
    for n in lengths:
        if offset + n > total:
            raise DecodeError("carriage", f"pub/sub value of {total} bytes is shorter than the "
                              "frame lengths it names")
        frames.append(data[offset:offset + n])
        offset = _padded(offset + n)
    if offset < total:  # (padding after the last frame may be left out)
        raise DecodeError("carriage", f"pub/sub value has {total - offset} bytes after its frames")
    return frames
