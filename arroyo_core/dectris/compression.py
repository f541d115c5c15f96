"""The two compressions of DECTRIS's tag 56500, each in the framing of its HDF5 filter.

Both start with a 12-byte big-endian header: the decompressed size (8 bytes) and the block
size in bytes (4 bytes); then come the blocks, each a 4-byte big-endian compressed size
and that many bytes.

- ``bslz4``: bitshuffle's HDF5 filter (32008, LZ4): blocks of ``block`` bytes, each
  bit-transposed in elements of the modifier's size, then LZ4-compressed; elements past
  the last multiple of 8 follow the blocks uncompressed. Decoded by bitshuffle, whose
  ``decompress_lz4`` gives up the GIL (and uses OpenMP threads if it was built with them).
- ``lz4``: the HDF5 LZ4 filter (32004): each block LZ4-compressed, or stored as it is when
  its compressed size equals its size. Decoded by python-lz4.

``bslz4`` is the chunk format of Arroyo's own ``bitshuffle-lz4`` entries
(:mod:`arroyo_core.compression`), made and checked by the same code: bitshuffle reads each
block's size from the data and does not know where the data end, so the block sizes are
walked first, and a corrupt or truncated stream is a DecodeError, never a read past the
buffer.
"""

from __future__ import annotations

import struct
from typing import Any

import bitshuffle
import lz4.block
import numpy as np

from ..compression import check_bitshuffle
from ..compression import compress as bitshuffle_lz4
from ..errors import DecodeError

HEADER = struct.Struct(">QI")  # decompressed bytes, block bytes
SIZE = struct.Struct(">I")
BLOCK_BYTES = 8192  # what DECTRIS detectors use for both
ALGORITHMS = ("bslz4", "lz4")


def decompress(data: bytes, algorithm: str, modifier: Any, max_bytes: int) -> Any:
    """The decompressed bytes (a uint8 ndarray or bytes) of one tag-56500 byte string."""
    if algorithm not in ALGORITHMS:
        raise DecodeError("compression", f"unknown algorithm {algorithm!r}; this reader "
                                         f"knows {ALGORITHMS}")
    if len(data) < HEADER.size:
        raise DecodeError("compression", f"{algorithm}: {len(data)} bytes, shorter than "
                                         "its 12-byte header")
    total, block = HEADER.unpack_from(data)
    if total > max_bytes:
        raise DecodeError("size", f"{algorithm}: decompresses to {total} bytes, more than "
                                  f"max_image_bytes ({max_bytes})")
    if algorithm == "bslz4":
        return _bslz4(data, total, block, modifier)
    return _lz4(data, total, block)


def _bslz4(data: bytes, total: int, block: int, elem_size: Any) -> np.ndarray:
    if elem_size not in (1, 2, 4, 8) or total % elem_size:
        raise DecodeError("compression", f"bslz4: element size {elem_size!r} does not fit "
                                         f"{total} bytes (1, 2, 4 or 8 dividing it)")
    raw = np.frombuffer(data, np.uint8)
    try:  # the same chunks as Arroyo's own bitshuffle-lz4 entries: checked the same way
        per_block = check_bitshuffle(raw, total, elem_size)
        out = bitshuffle.decompress_lz4(raw[HEADER.size:], (total // elem_size,),
                                        np.dtype(f"u{elem_size}"), per_block)
    except (RuntimeError, ValueError) as exc:
        raise DecodeError("compression", f"bslz4: {exc}") from None
    return out.view(np.uint8)


def _lz4(data: bytes, total: int, block: int) -> bytes:
    if total and not block:
        raise DecodeError("compression", "lz4: block size 0")
    parts, position, done = [], HEADER.size, 0
    view = memoryview(data)
    while done < total:
        want = min(block, total - done)
        size = _size_at(data, position, "lz4")
        chunk = view[position + SIZE.size:position + SIZE.size + size]
        if len(chunk) < size:
            raise DecodeError("compression", "lz4: truncated block")
        position += SIZE.size + size
        try:
            part = chunk if size == want else lz4.block.decompress(chunk, uncompressed_size=want)
        except lz4.block.LZ4BlockError as exc:
            raise DecodeError("compression", f"lz4: {exc}") from None
        if len(part) != want:
            raise DecodeError("compression", f"lz4: a block gave {len(part)} bytes, not {want}")
        parts.append(part)
        done += want
    return b"".join(parts)


def _size_at(data: bytes, position: int, algorithm: str) -> int:
    if position + SIZE.size > len(data):
        raise DecodeError("compression", f"{algorithm}: truncated at a block header")
    return int(SIZE.unpack_from(data, position)[0])


def compress(array: np.ndarray, algorithm: str, block: int = BLOCK_BYTES) -> bytes:
    """``array``'s bytes compressed as a detector sends them (for the simulator and tests);
    ``block`` (bytes) is for lz4: bslz4 takes bitshuffle's own, 8 KiB as well."""
    if algorithm == "bslz4":
        return bytes(bitshuffle_lz4(array, "bitshuffle-lz4"))
    flat = np.ascontiguousarray(array).reshape(-1)
    header = HEADER.pack(flat.nbytes, block)
    if algorithm != "lz4":
        raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    raw, parts = flat.view(np.uint8), [header]
    for start in range(0, len(raw), block):
        chunk = raw[start:start + block].tobytes()
        packed = lz4.block.compress(chunk, store_size=False)
        if len(packed) >= len(chunk):
            packed = chunk  # stored as it is, as the HDF5 filter does
        parts += [SIZE.pack(len(packed)), packed]
    return b"".join(parts)
