"""One value holding a whole multipart message: the *packed* layout that carries the frames
of ``wire.encode`` where a transport moves one value per message (a Redis pub/sub message,
an AMQP message body). Specified in ``docs/protocol.md`` (section 8.2).

``ARF``, version byte 1, frame count (uint32 LE), one uint64 LE length per frame, then the
frames, each starting at an offset that is a multiple of 8 (zero padding between), so
arrays decoded in place are aligned. Unpacked frames are memoryviews on the received
value: ``wire.decode`` turns them into numpy views without a copy.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from .errors import DecodeError

PACKED_MAGIC = b"ARF\x01"  # three magic bytes and the carriage version
ALIGN = 8
_COUNT = struct.Struct("<I")
_MAX_FRAMES = 2**16  # far above any Limits.max_arrays; bounds the length table we read
_ZEROS = bytes(ALIGN)


def _padded(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def packed_size(frames: Sequence[Any]) -> int:
    """Bytes that :func:`pack_frames` writes for ``frames``."""
    size = _padded(len(PACKED_MAGIC) + _COUNT.size + 8 * len(frames))
    for frame in frames:
        size += _padded(memoryview(frame).nbytes)
    return size


def pack_frames(frames: Sequence[Any], into: bytearray | None = None) -> memoryview:
    """Write ``frames`` as one packed value; return a view on the bytes written.

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


def pack_bytes(frames: Sequence[Any]) -> bytes:
    """The packed value of ``frames`` as a new ``bytes`` (for clients that take nothing
    else, like pika): one copy of each frame, as :func:`pack_frames` makes."""
    views = [memoryview(frame).cast("B") for frame in frames]
    prefix = len(PACKED_MAGIC) + _COUNT.size + 8 * len(views)
    pieces: list[Any] = [PACKED_MAGIC, _COUNT.pack(len(views)),
                         struct.pack(f"<{len(views)}Q", *(view.nbytes for view in views)),
                         _ZEROS[:_padded(prefix) - prefix]]
    for view in views:
        pieces.append(view)
        pieces.append(_ZEROS[:_padded(view.nbytes) - view.nbytes])
    return b"".join(pieces)


def unpack_frames(value: Any) -> list[memoryview]:
    """Return the frames of one packed value as views on it; raise DecodeError if malformed."""
    data = memoryview(value).cast("B")
    total = data.nbytes
    if total < 8 or data[:4] != PACKED_MAGIC:
        head = bytes(data[:4])
        if total >= 4 and head[:3] == PACKED_MAGIC[:3]:
            raise DecodeError("carriage", f"packed value has carriage version {head[3]}, not 1")
        raise DecodeError("carriage", f"packed value does not start with {PACKED_MAGIC!r} "
                          f"(starts with {head!r})")
    (count,) = _COUNT.unpack_from(data, 4)
    prefix = 8 + 8 * count
    if count == 0 or count > _MAX_FRAMES or prefix > total:
        raise DecodeError("carriage", f"packed value names {count} frames; it cannot hold them")
    lengths = struct.unpack_from(f"<{count}Q", data, 8)
    offset = _padded(prefix)
    frames = []
    for n in lengths:
        if offset + n > total:
            raise DecodeError("carriage", f"packed value of {total} bytes is shorter than the "
                              "frame lengths it names")
        frames.append(data[offset:offset + n])
        offset = _padded(offset + n)
    if offset < total:  # (padding after the last frame may be left out)
        raise DecodeError("carriage", f"packed value has {total - offset} bytes after its frames")
    return frames
