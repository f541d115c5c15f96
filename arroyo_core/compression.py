"""Compressed payload entries: arrays sent compressed, with the codec named in the header.

A compressed entry travels as a raw ``bytes`` entry under the array's own name, and the
Event's ``meta["compressed"]`` says how to get the array back (docs/protocol.md section 10,
*compressed payload entries, version 1*)::

    meta["compressed"] = {"v": 1, "arrays": {"image": ["bitshuffle-lz4", "<u2", [512, 512]]}}

so a receiver that does not know the convention still decodes the message (it sees bytes),
and one that does never guesses. Two codecs, both done by their libraries:

- ``bitshuffle-lz4``: the bytes of one chunk of HDF5's bitshuffle filter (id 32008) with LZ4,
  as Dectris detectors send them: a NeXus writer stores it as the chunk, unchanged
  (:mod:`arroyo_core.nexus_sink`). Needs the ``bitshuffle`` package.
- ``blosc2``: one Blosc2 chunk (bitshuffle filter, LZ4 codec), self-describing. Needs
  ``blosc2``.

Network bytes are checked before a decompressor reads them (sizes against the descriptor,
the bitshuffle block structure against the buffer's length), so a bad or hostile entry is
an error, not a read past the buffer.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from .components import Operator, Results
from .errors import ConfigError
from .message import Event, Payload

META_KEY = "compressed"
VERSION = 1
CODECS = ("bitshuffle-lz4", "blosc2")
INSTALL = {"bitshuffle-lz4": ("bitshuffle", "arroyo-stream[compression]"),
           "blosc2": ("blosc2", "arroyo-stream[compression]")}
_BSHUF_HEADER = struct.Struct(">QI")  # uncompressed bytes, block size in bytes (big-endian)
_BLOCK_PREFIX = struct.Struct(">I")  # each LZ4 block's compressed length
MAX_BYTES = 256 * 2**20  # what one decompressed entry may claim, as wire.Limits's message


def _module(codec: str) -> Any:
    """Import the library behind ``codec``, or a one-line error naming the extra."""
    module, extra = INSTALL[codec]
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"codec {codec!r} needs {module}, which is not installed: "
                          f"pip install '{extra}'") from None


def check_codec(codec: str) -> None:
    """Raise ConfigError unless ``codec`` is known and its library is installed."""
    if codec not in CODECS:
        raise ConfigError(f"option codec: expected one of {', '.join(CODECS)}, got {codec!r}")
    _module(codec)


def default_block_size(itemsize: int) -> int:
    """bitshuffle's own default block, in elements: 8 KiB, a multiple of 8 elements."""
    return max(8, (8192 // itemsize) // 8 * 8)


def compress(array: np.ndarray, codec: str, level: int = 5) -> bytes | memoryview:
    """The compressed bytes of ``array`` (C order) in ``codec``'s format (see module doc)."""
    array = np.ascontiguousarray(array)
    if codec == "bitshuffle-lz4":
        bitshuffle = _module(codec)
        block = default_block_size(array.dtype.itemsize)
        body = bitshuffle.compress_lz4(array.reshape(-1), block)
        out = np.empty(_BSHUF_HEADER.size + body.nbytes, np.uint8)
        _BSHUF_HEADER.pack_into(out.data, 0, array.nbytes, block * array.dtype.itemsize)
        out[_BSHUF_HEADER.size:] = body
        return out.data  # a memoryview: travels as a bytes entry
    if codec == "blosc2":
        blosc2 = _module(codec)
        return blosc2.compress2(array, typesize=array.dtype.itemsize, clevel=level,
                                codec=blosc2.Codec.LZ4, filters=[blosc2.Filter.BITSHUFFLE])
    raise ValueError(f"unknown codec {codec!r}; known: {', '.join(CODECS)}")


def decompress(data: Payload, codec: str, dtype: np.dtype, shape: Sequence[int],
               max_bytes: int = MAX_BYTES) -> np.ndarray:
    """The array ``data`` holds; ValueError if it is not a valid ``codec`` entry of that
    dtype and shape (checked before the decompressor reads it)."""
    nbytes = dtype.itemsize * math.prod(shape)
    if nbytes > max_bytes:
        raise ValueError(f"compressed entry claims {nbytes} bytes, more than {max_bytes}")
    raw = np.frombuffer(data, np.uint8)
    out = np.empty(tuple(shape), dtype)
    if codec == "bitshuffle-lz4":
        bitshuffle = _module(codec)
        block = check_bitshuffle(raw, nbytes, dtype.itemsize)
        if nbytes:
            flat = bitshuffle.decompress_lz4(raw[_BSHUF_HEADER.size:], (out.size,), dtype, block)
            out.reshape(-1)[...] = flat
        return out
    if codec == "blosc2":
        blosc2 = _module(codec)
        try:
            claimed, stored, _ = blosc2.get_cbuffer_sizes(raw)
        except Exception as exc:  # blosc2 raises several types for bad headers
            raise ValueError(f"blosc2 entry: not a Blosc2 chunk ({exc})") from None
        if claimed != nbytes or stored != raw.nbytes:
            raise ValueError(f"blosc2 entry holds {claimed} bytes in {stored}; expected "
                             f"{nbytes} in {raw.nbytes}")
        try:
            if nbytes:  # blosc2 refuses an empty destination
                blosc2.decompress2(raw, dst=out)
        except Exception as exc:
            raise ValueError(f"blosc2 entry does not decompress ({exc})") from None
        return out
    raise ValueError(f"unknown codec {codec!r}; known: {', '.join(CODECS)}")


def check_bitshuffle(raw: np.ndarray, nbytes: int, itemsize: int) -> int:
    """Walk the chunk's block lengths against its size (bitshuffle's decoder trusts them);
    return the block size in elements."""
    if raw.nbytes < _BSHUF_HEADER.size:
        raise ValueError("bitshuffle-lz4 entry shorter than its 12-byte header")
    claimed, block_bytes = _BSHUF_HEADER.unpack_from(raw.data, 0)
    if claimed != nbytes:
        raise ValueError(f"bitshuffle-lz4 entry holds {claimed} bytes; expected {nbytes}")
    block = block_bytes // itemsize
    if block_bytes % itemsize or block < 8 or block % 8:
        raise ValueError(f"bitshuffle-lz4 entry: block of {block_bytes} bytes is not a "
                         f"multiple of 8 elements of {itemsize} bytes")
    elements = nbytes // itemsize
    leftover = elements % block
    blocks = elements // block + (1 if leftover - leftover % 8 else 0)
    position, end = _BSHUF_HEADER.size, raw.nbytes - (leftover % 8) * itemsize
    data, unpack = raw.data, _BLOCK_PREFIX.unpack_from  # (once: a 4 Mpixel image has 1024)
    try:  # (a length running past the data stops unpack; one short of it, the check below)
        for _ in range(blocks):
            position += 4 + unpack(data, position)[0]
    except struct.error:
        raise ValueError("bitshuffle-lz4 entry is truncated") from None
    if position != end:
        raise ValueError(f"bitshuffle-lz4 entry: blocks end at byte {position}, expected {end}")
    return block


def descriptor(array: np.ndarray, codec: str) -> list[Any]:
    """``[codec, dtype, shape]``: what meta["compressed"]["arrays"] holds for one entry."""
    return [codec, array.dtype.str, list(array.shape)]


def compressed_entries(meta: dict[str, Any]) -> dict[str, list[Any]]:
    """The entries ``meta`` says are compressed (empty if none); ValueError if it says so
    in a form this version does not read."""
    spec = meta.get(META_KEY)
    if spec is None:
        return {}
    if not (isinstance(spec, dict) and spec.get("v") == VERSION
            and isinstance(spec.get("arrays"), dict)):
        raise ValueError(f"meta[{META_KEY!r}] is not {{'v': {VERSION}, 'arrays': {{...}}}} "
                         f"(docs/protocol.md section 10)")
    return spec["arrays"]


def expand(event: Event, max_bytes: int = MAX_BYTES) -> Event:
    """``event`` with every compressed entry decompressed and ``meta["compressed"]`` gone."""
    entries = compressed_entries(event.meta)
    if not entries:
        return event
    payload = dict(event.payload)
    for name, spec in entries.items():
        if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[2], list)
                and all(type(n) is int and n >= 0 for n in spec[2])):
            raise ValueError(f"compressed entry {name!r}: {spec!r} is not [codec, dtype, shape]")
        codec, dtype_text, shape = spec
        if codec not in CODECS:
            raise ValueError(f"compressed entry {name!r}: unknown codec {codec!r}")
        value = payload.get(name)
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ValueError(f"compressed entry {name!r} is not a bytes entry of the payload")
        dtype = _dtype(dtype_text)
        if dtype is None:
            raise ValueError(f"compressed entry {name!r}: {dtype_text!r} is not a numeric "
                             "dtype string (docs/protocol.md section 4)")
        payload[name] = decompress(value, codec, dtype, shape, max_bytes)
    meta = {key: value for key, value in event.meta.items() if key != META_KEY}
    return Event(meta, payload)


def _dtype(text: Any) -> np.dtype | None:
    """The numeric dtype ``text`` names in numpy's own spelling (as on the wire), or None."""
    if not isinstance(text, str) or not re.fullmatch(r"[<>|][biuf][0-9]{1,2}", text):
        return None
    try:
        dtype = np.dtype(text)
    except TypeError:
        return None
    return dtype if dtype.str == text else None


class Compress(Operator):
    """Compresses the arrays of each Event for the network, naming the codec in its header.

    Parameters
    ----------
    codec
        ``bitshuffle-lz4`` (HDF5 bitshuffle chunk: the NeXus sink stores it unchanged) or
        ``blosc2``.
    entries
        Names of the payload entries to compress; all arrays of at least ``min_bytes`` if
        omitted.
    min_bytes
        Smaller arrays travel as they are (compressing a few bytes costs more than it saves).
    level
        blosc2's compression level, 0-9.
    """

    def __init__(self, codec: str = "bitshuffle-lz4", entries: list[str] | None = None,
                 min_bytes: int = 4096, level: int = 5) -> None:
        super().__init__()
        check_codec(codec)
        self.codec = codec
        self.entries = None if entries is None else list(entries)
        self.min_bytes = int(min_bytes)
        self.level = int(level)

    def on_event(self, event: Event) -> Results:
        payload: dict[str, Payload] = dict(event.payload)
        done: dict[str, list[Any]] = dict(compressed_entries(event.meta))
        for name, value in event.payload.items():
            if not isinstance(value, np.ndarray) or name in done:
                continue
            wanted = (name in self.entries if self.entries is not None
                      else value.nbytes >= self.min_bytes)
            if wanted and value.dtype.kind in "biuf":
                payload[name] = compress(value, self.codec, self.level)
                done[name] = descriptor(value, self.codec)
        if not done:
            return event
        return Event({**event.meta, META_KEY: {"v": VERSION, "arrays": done}}, payload)


class Decompress(Operator):
    """Restores the arrays a :class:`Compress` step compressed; other Events pass unchanged.

    Parameters
    ----------
    max_bytes
        Largest decompressed entry accepted (a header claiming more is refused before
        anything is allocated).
    """

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        super().__init__()
        self.max_bytes = int(max_bytes)

    def on_event(self, event: Event) -> Results:
        return expand(event, self.max_bytes)
