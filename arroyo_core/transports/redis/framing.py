"""Redis carriage version 1: how the frames of ``wire.encode`` ride in Redis values.

ZeroMQ keeps frame boundaries; Redis stores one value per stream field or one value per
pub/sub message. This module maps the same frames (header, then one raw frame per array,
byte for byte as on ZeroMQ) onto those values and back, and nothing else: no Redis client
here. The layout is specified in ``docs/protocol.md`` (section 8).

- A stream entry holds the fields ``v`` (``b"1"``, this carriage's version), ``h`` (the
  header frame), then ``a0`` ... ``a{n-1}`` (the array frames), in that order.
- A pub/sub message is one value in the packed layout of :mod:`arroyo_core.packed`
  (``b"ARF"``, version byte 1, a table of frame lengths, then the frames, 8-byte aligned).

Received frames come back as memoryviews on the received bytes: ``wire.decode`` turns
them into numpy views without a copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import DecodeError
from ...packed import ALIGN, PACKED_MAGIC, pack_frames, packed_size, unpack_frames

__all__ = ["ALIGN", "PACKED_MAGIC", "frames_from_fields", "pack_frames", "packed_size",
           "stream_fields", "unpack_frames"]

CARRIAGE_VERSION = b"1"
VERSION_FIELD, HEADER_FIELD = b"v", b"h"

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
