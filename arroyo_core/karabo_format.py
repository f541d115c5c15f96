"""Reading a karabo-bridge message (European XFEL's protocol): one train of data.

Protocol 2.2: frames come in pairs, a msgpack header and its payload. A header
``{"source", "content": "msgpack", "metadata"}`` is followed by the source's other values
(a msgpack map); a header ``{"source", "content": "array", "path", "dtype", "shape"}`` by
the raw bytes of one array. Protocol 1.0: one msgpack map ``{source: {key: value}}`` whose
arrays are msgpack-numpy maps (``{b"nd": True, b"type", b"shape", b"data"}``) and whose
per-source metadata sits under ``"metadata"``.

Arrays are read-only numpy views on the received bytes (no copy). Any frames that are not
such a message raise :class:`~arroyo_core.errors.DecodeError` with a reason to count by:
msgpack-numpy's object arrays (which it unpickles) are refused, never unpickled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from .errors import DecodeError
from .message import Payload
from .wire import ALLOWED_KINDS, array_view

PROTOCOLS = ("auto", "1.0", "2.2")
SEPARATOR = "/"  # payload name = source + "/" + key; Karabo keys use "." and never "/"


@dataclass
class Train:
    """One karabo-bridge message: what each source sent for one train."""

    train_id: int
    protocol: str
    arrays: dict[str, Payload] = field(default_factory=dict)  # "source/key": array
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # source: other values
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # source: its metadata

    @property
    def sources(self) -> list[str]:
        return sorted(self.metadata)


def decode_train(frames: list[Any], protocol: str = "auto") -> Train:
    """Read one message (zmq Frames or bytes) of ``protocol`` (``auto``: 1.0 if it is one
    frame, else 2.2); raise DecodeError for anything else."""
    if not frames:
        raise DecodeError("frames", "no frames")
    if protocol == "auto":
        protocol = "1.0" if len(frames) == 1 else "2.2"
    if protocol == "1.0":
        if len(frames) != 1:
            raise DecodeError("protocol", f"protocol 1.0 is one frame, {len(frames)} came")
        train = _decode_1_0(_buffer(frames[0]))
    else:
        if len(frames) % 2:
            raise DecodeError("frames", f"protocol 2.2 sends header/payload pairs, "
                              f"{len(frames)} frames came")
        train = _decode_2_2(frames)
    train.protocol = protocol
    return train


def _buffer(frame: Any) -> memoryview:
    return memoryview(frame.buffer if hasattr(frame, "buffer") else frame)


def _unpack(buffer: Any, what: str) -> Any:
    try:
        return msgpack.unpackb(buffer, raw=False, ext_hook=_reject_ext,
                               strict_map_key=False)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise DecodeError("msgpack", f"{what} is not valid msgpack ({exc})") from None


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError("msgpack", f"msgpack extension type {code}")


def _decode_2_2(frames: list[Any]) -> Train:
    train = Train(train_id=-1, protocol="2.2")
    for index in range(0, len(frames), 2):
        header = _unpack(_buffer(frames[index]), f"header {index}")
        if not isinstance(header, dict) or not isinstance(header.get("source"), str):
            raise DecodeError("header", f"frame {index} is not a header with a source name")
        source, content = header["source"], header.get("content")
        if content == "msgpack":
            values = _unpack(_buffer(frames[index + 1]), f"values of {source!r}")
            metadata = header.get("metadata", {})
            if not isinstance(values, dict) or not isinstance(metadata, dict):
                raise DecodeError("header", f"source {source!r}: values or metadata not a map")
            train.values[source] = {**train.values.get(source, {}), **values}
            train.metadata[source] = metadata
        elif content == "array":
            path = header.get("path")
            if not isinstance(path, str):
                raise DecodeError("header", f"source {source!r}: array without a path")
            dtype = _dtype(header.get("dtype"), f"{source}{SEPARATOR}{path}")
            shape = _shape(header.get("shape"), f"{source}{SEPARATOR}{path}")
            name = f"{source}{SEPARATOR}{path}"
            train.arrays[name] = array_view(name, dtype, shape, dtype.itemsize * math.prod(shape),
                                            _buffer(frames[index + 1]))
            train.metadata.setdefault(source, {})
        else:
            raise DecodeError("content", f"source {source!r}: unknown content {content!r}")
    train.train_id = _train_id(train)
    return train


def _decode_1_0(buffer: memoryview) -> Train:
    data = _unpack(buffer, "message")
    if not isinstance(data, dict) or not all(isinstance(s, str) and isinstance(v, dict)
                                             for s, v in data.items()):
        raise DecodeError("header", "a protocol 1.0 message is a map of source to map")
    train = Train(train_id=-1, protocol="1.0")
    for source, props in data.items():
        metadata = props.get("metadata", {})
        train.metadata[source] = metadata if isinstance(metadata, dict) else {}
        values: dict[str, Any] = {}
        for key, value in props.items():
            if key == "metadata":
                continue
            if isinstance(value, dict) and b"nd" in value:
                value = _numpy_1_0(value, f"{source}{SEPARATOR}{key}")
                if isinstance(value, np.ndarray):
                    train.arrays[f"{source}{SEPARATOR}{key}"] = value
                    continue
            values[key] = value
        train.values[source] = values
    train.train_id = _train_id(train)
    return train


def _numpy_1_0(packed: dict[Any, Any], name: str) -> Any:
    """A msgpack-numpy array (``nd`` true) or scalar (``nd`` false), never unpickled."""
    kind, data = packed.get(b"kind", b""), packed.get(b"data")
    if kind not in (b"", ""):
        raise DecodeError("dtype", f"{name}: msgpack-numpy kind {kind!r} is refused (object "
                          "arrays would be unpickled; structured ones are not supported)")
    if not isinstance(data, bytes):
        raise DecodeError("header", f"{name}: msgpack-numpy data is not bytes")
    dtype = _dtype(packed.get(b"type"), name)
    if packed.get(b"nd") is not True:
        if len(data) != dtype.itemsize:
            raise DecodeError("length", f"{name}: a {dtype} scalar of {len(data)} bytes")
        return np.frombuffer(data, dtype)[0].item()
    shape = _shape(packed.get(b"shape"), name)
    return array_view(name, dtype, shape, dtype.itemsize * math.prod(shape), memoryview(data))


def _dtype(text: Any, name: str) -> np.dtype:
    try:
        dtype = np.dtype(text) if isinstance(text, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in ALLOWED_KINDS or dtype.itemsize == 0:
        raise DecodeError("dtype", f"{name}: {text!r} is not an allowed numpy dtype")
    return dtype


def _shape(shape: Any, name: str) -> list[int]:
    if not (isinstance(shape, list | tuple) and len(shape) <= 32
            and all(type(n) is int and n >= 0 for n in shape)):
        raise DecodeError("shape", f"{name}: shape {shape!r} is not a list of sizes")
    return list(shape)


def _train_id(train: Train) -> int:
    """The train id the sources' metadata give (``timestamp.tid``; the first source that
    has one, in name order)."""
    for source in train.sources:
        tid = train.metadata[source].get("timestamp.tid")
        if type(tid) is int and tid >= 0:
            return tid
    raise DecodeError("train", f"no source's metadata has a train id (timestamp.tid); "
                      f"sources {train.sources}")
