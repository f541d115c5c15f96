"""DECTRIS stream v2 messages as CBOR (RFC 8949), with cbor2: one top-level map per message.

Image data are RFC 8746 arrays: tag 40 (row-major) or 1040 (column-major) around
``[dimensions, typed array]``, where a typed array is a tag 64-87 around a byte string.
Where a byte string is expected, DECTRIS may put their compression tag 56500 around
``[algorithm, modifier, compressed bytes]`` instead (``bslz4``: bitshuffle + LZ4, the
modifier is the element size; ``lz4``: LZ4 alone), each in the framing of its HDF5 filter
(:mod:`.compression`). cbor2 calls the tag hook innermost first, so a compressed byte
string is already decompressed when its typed array is read, and the typed array is an
ndarray when its dimensions are applied.

Every way a message can be wrong raises :class:`~arroyo_core.errors.DecodeError` with a
``reason`` the listener counts by: ``cbor`` (not CBOR, or truncated), ``message`` (not a
map with a known ``type``, or a field of the wrong kind), ``array`` (a typed array that
does not fit its tag or dimensions), ``compression`` and ``size`` (from
:mod:`.compression`).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import cbor2
import numpy as np

from ..errors import DecodeError
from .compression import compress, decompress

ROW_MAJOR, COLUMN_MAJOR = 40, 1040  # RFC 8746 section 3.1
COMPRESSED = 56500  # DECTRIS's compressed byte string
TYPED_FIRST, TYPED_LAST = 64, 87  # RFC 8746 section 2: 0b010_f_s_e_ll
CLAMPED_UINT8, RESERVED = 68, 76
FLOAT_BYTES = (2, 4, 8, 16)  # ll for floats: half, single, double, quad
MESSAGE_TYPES = ("start", "image", "end")


def typed_array_dtype(tag: int) -> np.dtype | None:
    """The numpy dtype of RFC 8746 typed-array tag ``tag`` (None if it is not one, or is
    quad precision, which numpy cannot hold portably). The tag's low bits say
    float/signed/little-endian/size, so the table of 23 tags is computed, not listed."""
    if not TYPED_FIRST <= tag <= TYPED_LAST or tag == RESERVED:
        return None
    bits = tag - TYPED_FIRST
    floating, signed, little, size = bits >> 4 & 1, bits >> 3 & 1, bits >> 2 & 1, bits & 3
    order = "<" if little else ">"
    if floating:
        nbytes = FLOAT_BYTES[size]
        return None if nbytes == 16 else np.dtype(f"{order}f{nbytes}")
    return np.dtype(f"{order}{'i' if signed else 'u'}{1 << size}")


def typed_array_tag(dtype: np.dtype) -> int:
    """The RFC 8746 tag of ``dtype`` (the inverse of :func:`typed_array_dtype`)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iuf" or dtype.itemsize not in (1, 2, 4, 8):
        raise ValueError(f"no RFC 8746 typed array holds {dtype}")
    little = dtype.byteorder == "<" or (dtype.byteorder in "=|" and np.little_endian)
    if dtype.kind == "f":
        size = FLOAT_BYTES.index(dtype.itemsize)
        return TYPED_FIRST | 1 << 4 | int(little) << 2 | size
    size = dtype.itemsize.bit_length() - 1
    if dtype.itemsize == 1:
        little = False  # tag 68 is the clamped uint8 and 76 is reserved: 8 bits are "BE"
    return TYPED_FIRST | int(dtype.kind == "i") << 3 | int(little) << 2 | size


class Decoder:
    """Decodes stream v2 messages; ``max_bytes`` bounds what one compressed array may
    claim to decompress to (a 12-byte header cannot ask for terabytes)."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes

    def decode(self, data: Any) -> dict[str, Any]:
        """The message in ``data`` (bytes or a buffer) as a dict, its arrays as ndarrays."""
        try:
            message = cbor2.loads(data, tag_hook=self._tag)
        except cbor2.CBORDecodeError as exc:
            cause = exc.__cause__
            if isinstance(cause, DecodeError):
                raise cause from None
            raise DecodeError("cbor", str(exc)) from None
        except DecodeError:
            raise
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            raise DecodeError("cbor", f"{type(exc).__name__}: {exc}") from None
        if not isinstance(message, Mapping) or message.get("type") not in MESSAGE_TYPES:
            kind = message.get("type") if isinstance(message, Mapping) else type(message)
            raise DecodeError("message", f"not a stream v2 message (type {kind!r}); "
                                         f"expected a map whose type is one of {MESSAGE_TYPES}")
        return dict(message)

    def _tag(self, tag: cbor2.CBORTag, immutable: bool) -> Any:
        number, value = tag.tag, tag.value
        if number == COMPRESSED:
            if not (isinstance(value, (list, tuple)) and len(value) == 3
                    and isinstance(value[0], str) and isinstance(value[2], bytes)):
                raise DecodeError("compression", "tag 56500 holds [algorithm, modifier, "
                                                 f"bytes], got {_what(value)}")
            return decompress(value[2], value[0], value[1], self.max_bytes)
        if number in (ROW_MAJOR, COLUMN_MAJOR):
            return _shaped(value, number == COLUMN_MAJOR)
        dtype = typed_array_dtype(number)
        if dtype is not None:
            if not isinstance(value, (bytes, np.ndarray)):
                raise DecodeError("array", f"typed array tag {number} holds {_what(value)}, "
                                           "not a byte string")
            nbytes = value.nbytes if isinstance(value, np.ndarray) else len(value)
            if nbytes % dtype.itemsize:
                raise DecodeError("array", f"typed array tag {number}: {nbytes} bytes is "
                                           f"not a whole number of {dtype} elements")
            return np.frombuffer(value, dtype)
        return tag  # a tag this reader does not know: kept, shown as text in metadata


def _shaped(value: Any, column_major: bool) -> np.ndarray:
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and isinstance(value[0], (list, tuple))
            and all(isinstance(n, int) and n >= 0 for n in value[0])):
        raise DecodeError("array", f"a multi-dimensional array is [dimensions, array], got "
                                   f"{_what(value)}")
    dimensions, contents = value
    array = contents if isinstance(contents, np.ndarray) else np.asarray(contents)
    if array.ndim != 1 or array.dtype.kind not in "biuf":
        raise DecodeError("array", "a multi-dimensional array's contents must be a typed "
                                   "array or a flat array of numbers")
    if int(np.prod(dimensions)) != array.size:
        raise DecodeError("array", f"dimensions {list(dimensions)} do not fit "
                                   f"{array.size} elements")
    return array.reshape(dimensions, order="F" if column_major else "C")


def _what(value: Any) -> str:
    return type(value).__name__


def plain(value: Any) -> Any:
    """``value`` as msgpack-safe metadata: maps as dicts, tuples as lists, datetimes as
    ISO 8601 text, unknown tags as text; arrays are not metadata (see :func:`arrays_in`)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()
                if not isinstance(item, np.ndarray)}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, cbor2.CBORTag):
        return f"tag {value.tag}: {value.value!r}"[:200]
    if isinstance(value, (str, int, float, bool, bytes)) or value is None:
        return value
    return repr(value)[:200]


def arrays_in(value: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Names (``flatfield/threshold_1``) of the arrays :func:`plain` leaves out."""
    names = []
    for key, item in value.items():
        if isinstance(item, np.ndarray):
            names.append(f"{prefix}{key}")
        elif isinstance(item, Mapping):
            names += arrays_in(item, f"{prefix}{key}/")
    return names


def encode_array(array: np.ndarray, compression: str = "bslz4") -> cbor2.CBORTag:
    """``array`` as a tag-40 multi-dimensional typed array, its bytes compressed with
    ``compression`` (``bslz4``, ``lz4`` or ``none``), as a DECTRIS detector sends it."""
    array = np.ascontiguousarray(array)
    data: Any = array.tobytes()
    if compression != "none":
        data = cbor2.CBORTag(COMPRESSED, [compression, array.itemsize if compression == "bslz4"
                                          else 0, compress(array, compression)])
    return cbor2.CBORTag(ROW_MAJOR, [list(array.shape),
                                     cbor2.CBORTag(typed_array_tag(array.dtype), data)])


def encode(message: Any) -> bytes:
    """One message (a map; anything else makes a malformed one) as CBOR; ``datetime``
    values go as tag 0 (RFC 8949 section 3.4.1)."""
    return cbor2.dumps(message, datetime_as_timestamp=False, timezone=datetime.UTC)
