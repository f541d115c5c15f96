"""Reading karabo-bridge messages, against the karabo-bridge package's own serializer and
deserializer (the oracle): same arrays, values and metadata, for protocols 1.0 and 2.2."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from arroyo_core.errors import DecodeError
from arroyo_core.karabo_format import decode_train

karabo = pytest.importorskip("karabo_bridge.serializer", reason="pip install arroyo-stream[karabo]")


def train(tid: int = 7) -> tuple[dict, dict]:
    data = {"A/DET/1:out": {"image.data": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
                            "image.mask": np.array([[True, False]]),
                            "gain": np.arange(3, dtype=">i8"), "label": "x", "count": 3},
            "B/MOTOR/2": {"position": 1.5, "flags": [1, 2]}}
    meta = {src: {"source": src, "timestamp": 1.25, "timestamp.tid": tid} for src in data}
    return data, meta


@pytest.mark.parametrize("protocol", ["1.0", "2.2"])
def test_the_same_train_as_karabo_bridges_own_reader(protocol) -> None:
    data, meta = train()
    frames = karabo.serialize(data, meta, protocol_version=protocol)
    got = decode_train([bytes(f) for f in frames])
    want_data, want_meta = karabo.deserialize([bytes(f) for f in frames])
    assert got.protocol == protocol and got.train_id == 7
    assert got.sources == ["A/DET/1:out", "B/MOTOR/2"]
    for source, props in want_data.items():
        for key, value in props.items():
            if isinstance(value, np.ndarray):
                array = got.arrays[f"{source}/{key}"]
                assert array.dtype == value.dtype and array.shape == value.shape
                assert np.array_equal(array, value) and not array.flags.writeable
            elif key != "metadata":
                assert got.values[source][key] == value
        assert got.metadata[source] == want_meta[source]


def test_explicit_protocol_refuses_the_other() -> None:
    frames = karabo.serialize(*train(), protocol_version="2.2")
    with pytest.raises(DecodeError) as caught:
        decode_train([bytes(f) for f in frames], "1.0")
    assert caught.value.reason == "protocol"


@pytest.mark.parametrize(("frames", "reason"), [
    ([], "frames"),
    ([b"\xc1"], "msgpack"),
    ([msgpack.packb([1, 2])], "header"),
    ([msgpack.packb({"source": "S", "content": "array", "path": "x", "dtype": "object",
                     "shape": [1]}), b"12345678"], "dtype"),
    ([msgpack.packb({"source": "S", "content": "array", "path": "x", "dtype": "uint8",
                     "shape": [-1]}), b""], "shape"),
    ([msgpack.packb({"source": "S", "content": "msgpack", "metadata": {}}),
      msgpack.packb({})], "train"),
])
def test_malformed_messages_raise_decode_errors(frames, reason) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_train(frames)
    assert caught.value.reason == reason
