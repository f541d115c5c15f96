"""Compressed payload entries (docs/protocol.md section 10): bit-exact round trips, the
test vectors read out of the document, and bad bytes refused before a decompressor reads
them."""

from __future__ import annotations

import numpy as np
import pytest

from arroyo_core import CollectingSink, Event, MemoryListener, Runtime, Start, Stop, decode
from arroyo_core.compression import (
    CODECS,
    Compress,
    Decompress,
    compress,
    decompress,
    descriptor,
    expand,
)
from arroyo_core.errors import ConfigError
from arroyo_core.wire import encode
from tests.unit.test_protocol_vectors import PROTOCOL, parse_vectors

pytest.importorskip("bitshuffle")
pytest.importorskip("blosc2")


def photon_frame(shape=(97, 131), dtype="<u2", seed=0) -> np.ndarray:
    """Sparse counts (most pixels 0), odd sizes: blocks and the raw tail are exercised."""
    return np.random.default_rng(seed).poisson(0.3, shape).astype(dtype)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", ["|u1", "<u2", ">u2", "<i4", "<u4", "<f4", "<f8", "|b1"])
def test_round_trip_is_bit_exact(codec, dtype):
    array = photon_frame(dtype=dtype)
    data = compress(array, codec)
    back = decompress(data, codec, array.dtype, array.shape)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == array.tobytes()


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (8,), (4096,), (4103,), (3, 0, 2)])
def test_round_trip_of_edge_sizes(codec, shape):
    array = np.arange(int(np.prod(shape)), dtype="<u2").reshape(shape)
    assert np.array_equal(decompress(compress(array, codec), codec, array.dtype, shape), array)


def test_sparse_frames_compress(codec="bitshuffle-lz4"):
    array = photon_frame((256, 256))
    assert len(compress(array, codec)) < array.nbytes / 3


def section_10() -> dict[str, list[bytes]]:
    text = PROTOCOL.read_text(encoding="utf-8").split("## 10. ")[1]
    return parse_vectors(text.replace("```hexdump codec\n", "```hexdump\n"))


@pytest.mark.parametrize("codec", CODECS)
def test_the_documented_vectors_decode_to_their_values(codec):
    frames = section_10()[f"compressed-{codec}"]
    message, _ = decode(frames)
    image = np.arange(16, dtype="<u2").reshape(2, 8)
    assert message.meta["compressed"] == {"v": 1, "arrays": {"image": [codec, "<u2", [2, 8]]}}
    restored = expand(message)
    assert "compressed" not in restored.meta
    np.testing.assert_array_equal(restored.payload["image"], image)
    # the header is what encode writes for that message (the compressed bytes may differ)
    seq = CODECS.index(codec)
    again = encode(Event(message.meta, {"image": bytes(frames[1])}), src="det-1", seq=seq,
                   time=1700000000.5)
    assert bytes(again[0]) == frames[0]


def test_bad_entries_are_refused_before_decompressing():
    array = photon_frame()
    good = bytes(compress(array, "bitshuffle-lz4"))
    cases = {
        "truncated": good[:-5],
        "longer": good + b"\0",
        "short header": good[:7],
        "claims other size": (array.nbytes + 2).to_bytes(8, "big") + good[8:],
        "odd block": good[:8] + (7).to_bytes(4, "big") + good[12:],
    }
    for what, data in cases.items():
        with pytest.raises(ValueError):
            decompress(data, "bitshuffle-lz4", array.dtype, array.shape)
            pytest.fail(what)
    with pytest.raises(ValueError, match="more than"):
        decompress(good, "bitshuffle-lz4", array.dtype, (2**20, 2**20))
    blob = bytes(compress(array, "blosc2"))
    for data in (blob[:-3], b"not blosc" * 8, blob + b"\0"):
        with pytest.raises(ValueError):
            decompress(data, "blosc2", array.dtype, array.shape)


def test_random_corruption_is_an_error_or_a_wrong_array_never_a_crash():
    array = photon_frame((64, 64))
    rng = np.random.default_rng(1)
    for codec in CODECS:
        good = np.frombuffer(bytes(compress(array, codec)), np.uint8)
        for _ in range(200):
            bad = good.copy()
            spots = rng.integers(0, bad.size, rng.integers(1, 4))
            bad[spots] = rng.integers(0, 256, spots.size)
            try:
                decompress(bad.tobytes(), codec, array.dtype, array.shape)
            except (ValueError, RuntimeError):
                pass


@pytest.mark.parametrize("meta", [
    {"compressed": {"v": 2, "arrays": {}}},
    {"compressed": {"v": 1, "arrays": {"image": ["zstd", "<u2", [2]]}}},
    {"compressed": {"v": 1, "arrays": {"image": ["blosc2", "|O", [2]]}}},
    {"compressed": {"v": 1, "arrays": {"image": ["blosc2", "<u2", [-1]]}}},
    {"compressed": {"v": 1, "arrays": {"other": ["blosc2", "<u2", [2]]}}},
])
def test_a_bad_description_is_refused(meta):
    with pytest.raises(ValueError):
        expand(Event(meta, {"image": b"\0\0\0\0"}))


def test_operators_compress_and_restore_in_one_process():
    frames = [photon_frame(seed=i) for i in range(3)]
    messages = [Start({"run": "r"}), *[Event({"frame": i}, {"image": f, "tiny": np.arange(3)})
                                       for i, f in enumerate(frames)], Stop({})]
    packed = CollectingSink()
    Runtime(MemoryListener(messages), Compress(codec="blosc2"), [packed]).run()
    event = packed.messages[1]
    assert event.meta["compressed"]["arrays"] == {"image": descriptor(frames[0], "blosc2")}
    assert isinstance(event.payload["image"], bytes)  # travels as a bytes entry
    assert isinstance(event.payload["tiny"], np.ndarray)  # under min_bytes: as it was
    restored = CollectingSink()
    Runtime(MemoryListener(packed.messages), Decompress(), [restored]).run()
    for frame, message in zip(frames, restored.messages[1:-1], strict=True):
        assert message.payload["image"].tobytes() == frame.tobytes()
        assert "compressed" not in message.meta


def test_an_unknown_codec_is_a_config_error():
    with pytest.raises(ConfigError, match="bitshuffle-lz4, blosc2"):
        Compress(codec="zip")
