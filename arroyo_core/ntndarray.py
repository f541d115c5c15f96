"""EPICS areaDetector's NTNDArray, read into a numpy array and metadata, and written from
them (through pvapy's ``pvaccess``, imported only when a frame is written).

An NTNDArray holds one frame as a union ``value`` (``ubyteValue``, ``ushortValue``,
``floatValue`` ...: the field names the element type), its ``dimension`` list (the fastest
varying first, so numpy's C-order shape is the reverse), ``uniqueId`` (the frame number
the detector gave), ``timeStamp``, ``codec`` (empty when not compressed) and a list of
named ``attribute`` values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import DecodeError

FIELDS = {"booleanValue": np.dtype(bool), "byteValue": np.dtype("int8"),
          "ubyteValue": np.dtype("uint8"), "shortValue": np.dtype("int16"),
          "ushortValue": np.dtype("uint16"), "intValue": np.dtype("int32"),
          "uintValue": np.dtype("uint32"), "longValue": np.dtype("int64"),
          "ulongValue": np.dtype("uint64"), "floatValue": np.dtype("float32"),
          "doubleValue": np.dtype("float64")}
FIELD_OF = {dtype: name for name, dtype in FIELDS.items()}
SCALARS = (bool, int, float, str)  # attribute values carried into metadata as they are


def read_frame(pv: Any) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The frame an NTNDArray update holds, as a read-only array (a view on pvapy's
    buffer, no copy) shaped by its dimensions, and its metadata: ``uniqueId``,
    ``timestamp`` (Unix seconds) and ``attributes`` ({name: value}). The array is None for
    an NTNDArray without dimensions (a channel that has not had a frame yet).

    Raises DecodeError for a compressed frame (``codec``), an unknown element type or a
    value whose length does not match its dimensions.
    """
    unique_id = pv["uniqueId"]
    meta: dict[str, Any] = {"uniqueId": unique_id, "timestamp": _seconds(pv["timeStamp"]),
                            "attributes": _attributes(pv["attribute"])}
    dims = pv["dimension"]
    if not dims:
        return None, meta
    codec = pv["codec.name"]  # (a field path: quicker than the codec as a dict)
    if codec:
        raise DecodeError("codec", f"frame {unique_id} is compressed ({codec!r}): not supported")
    field = pv.getSelectedUnionFieldName()
    dtype = FIELDS.get(field)
    if dtype is None:
        raise DecodeError("dtype", f"frame {unique_id}: value field {field!r} is not numeric")
    array = pv.getUnion("value")[field]
    shape = tuple(d["size"] for d in reversed(dims))
    if array.size != math.prod(shape) or array.dtype != dtype:
        raise DecodeError("length", f"frame {unique_id}: {array.size} {array.dtype} values "
                          f"for dimensions {list(reversed(shape))} of {dtype}")
    array = array.reshape(shape)
    array.flags.writeable = False
    return array, meta


def _seconds(stamp: Any) -> float:
    return stamp["secondsPastEpoch"] + stamp["nanoseconds"] * 1e-9


def _attributes(attributes: Any) -> dict[str, Any]:
    """{name: value} of NTNDArray attributes whose values are scalars or strings."""
    found: dict[str, Any] = {}
    for attribute in attributes:
        union = attribute.get("value")
        value = (next(iter(union[0].values()), None)
                 if isinstance(union, tuple) and union and isinstance(union[0], dict) else None)
        if isinstance(value, SCALARS):
            found[str(attribute.get("name"))] = value
    return found


def write_frame(array: np.ndarray, unique_id: int, timestamp: float,
                attributes: dict[str, Any]) -> Any:
    """An NTNDArray (a pvaccess PvObject) holding ``array`` (copied by pvapy), numbered
    ``unique_id``, with the scalar and string ``attributes`` (others are left out)."""
    import pvaccess as pva

    field = FIELD_OF.get(array.dtype.newbyteorder("="))
    if field is None:
        raise ValueError(f"dtype {array.dtype} has no NTNDArray value field")
    frame = pva.NtNdArray()
    data = np.ascontiguousarray(array).reshape(-1)
    if data.dtype.byteorder not in "=|":
        data = data.astype(data.dtype.newbyteorder("="))
    frame["value"] = {field: data}
    frame["dimension"] = [pva.PvDimension(int(n), 0, int(n), 1, False)
                          for n in reversed(array.shape)]
    frame["uniqueId"] = int(unique_id)
    frame["compressedSize"] = frame["uncompressedSize"] = int(data.nbytes)
    stamp = pva.PvTimeStamp(timestamp)
    frame["timeStamp"] = stamp
    frame["dataTimeStamp"] = stamp
    frame["attribute"] = [pva.NtAttribute(name, _pv_scalar(pva, value))
                          for name, value in attributes.items()
                          if isinstance(value, SCALARS)]
    return frame


def _pv_scalar(pva: Any, value: Any) -> Any:
    if isinstance(value, bool):
        return pva.PvBoolean(value)
    if isinstance(value, int):
        return pva.PvLong(value) if not -2**31 <= value < 2**31 else pva.PvInt(value)
    if isinstance(value, float):
        return pva.PvDouble(value)
    return pva.PvString(value)
