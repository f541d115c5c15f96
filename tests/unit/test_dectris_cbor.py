"""DECTRIS stream v2 decoding: RFC 8746 typed arrays, the two tag-56500 compressions checked
against the HDF5 filters whose framing they use (an independent implementation, through
h5py's direct chunk I/O), and every malformed message a DecodeError with its reason."""

from __future__ import annotations

import cbor2
import numpy as np
import pytest

from arroyo_core.dectris.cbor import (
    COLUMN_MAJOR,
    Decoder,
    encode,
    encode_array,
    typed_array_dtype,
    typed_array_tag,
)
from arroyo_core.dectris.compression import compress, decompress
from arroyo_core.dectris.simulator import malformed_messages
from arroyo_core.errors import DecodeError

h5py = pytest.importorskip("h5py")
hdf5plugin = pytest.importorskip("hdf5plugin")

# RFC 8746 section 2.1, table 1 (a few of each kind), as the RFC lists them
RFC_TAGS = {64: "u1", 65: ">u2", 66: ">u4", 67: ">u8", 69: "<u2", 70: "<u4", 71: "<u8",
            72: "i1", 73: ">i2", 77: "<i2", 79: "<i8", 80: ">f2", 81: ">f4", 82: ">f8",
            84: "<f2", 85: "<f4", 86: "<f8"}


@pytest.mark.parametrize("tag", sorted(RFC_TAGS))
def test_typed_array_tags_are_the_rfcs(tag):
    assert typed_array_dtype(tag) == np.dtype(RFC_TAGS[tag])
    assert typed_array_tag(np.dtype(RFC_TAGS[tag])) == tag


def test_tags_that_are_no_numpy_array_are_not_read_as_one():
    assert typed_array_dtype(76) is None  # reserved
    assert typed_array_dtype(83) is None and typed_array_dtype(87) is None  # float128
    assert typed_array_dtype(63) is None and typed_array_dtype(88) is None
    assert typed_array_dtype(68) == np.dtype("u1")  # clamped uint8 is still uint8


IMAGES = [np.random.default_rng(7).poisson(2.0, (67, 131)).astype(dtype)
          for dtype in ("uint8", "uint16", "uint32", ">u2", "int32", "float32")]


@pytest.mark.parametrize("compression", ["bslz4", "lz4", "none"])
@pytest.mark.parametrize("image", IMAGES, ids=lambda a: a.dtype.str)
def test_an_image_message_round_trips(compression, image):
    message = Decoder().decode(encode({"type": "image", "image_id": 3,
                                       "data": {"threshold_1": encode_array(image, compression)}}))
    got = message["data"]["threshold_1"]
    assert got.dtype == image.dtype and np.array_equal(got, image)


def test_column_major_arrays_are_read_in_fortran_order():
    image = np.arange(6, dtype="<u2").reshape(2, 3)
    tagged = cbor2.CBORTag(COLUMN_MAJOR, [[2, 3], cbor2.CBORTag(69, image.T.tobytes())])
    got = Decoder().decode(encode({"type": "image", "data": {"t": tagged}}))["data"]["t"]
    assert np.array_equal(got, image)


def _hdf5_dataset(tmp_path, image, compression):
    f = h5py.File(tmp_path / "oracle.h5", "w")
    return f, f.create_dataset("d", shape=image.shape, dtype=image.dtype, chunks=image.shape,
                               **compression)


FILTERS = {"bslz4": hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
           "lz4": hdf5plugin.LZ4(nbytes=8192)}


@pytest.mark.parametrize("algorithm", ["bslz4", "lz4"])
@pytest.mark.parametrize("image", IMAGES[:3], ids=lambda a: a.dtype.str)
def test_our_compressed_bytes_are_what_the_hdf5_filter_reads(tmp_path, algorithm, image):
    f, dataset = _hdf5_dataset(tmp_path, image, FILTERS[algorithm])
    with f:
        dataset.id.write_direct_chunk((0, 0), compress(image, algorithm))
        assert np.array_equal(dataset[()], image)


@pytest.mark.parametrize("algorithm", ["bslz4", "lz4"])
@pytest.mark.parametrize("image", IMAGES[:3], ids=lambda a: a.dtype.str)
def test_we_read_what_the_hdf5_filter_wrote(tmp_path, algorithm, image):
    f, dataset = _hdf5_dataset(tmp_path, image, FILTERS[algorithm])
    with f:
        dataset[()] = image
        _, chunk = dataset.id.read_direct_chunk((0, 0))
    raw = decompress(chunk, algorithm, image.itemsize, 1 << 30)
    assert np.array_equal(np.frombuffer(raw, image.dtype).reshape(image.shape), image)


@pytest.mark.parametrize("algorithm", ["bslz4", "lz4"])
def test_every_truncation_of_a_compressed_array_is_a_decode_error(algorithm):
    data = compress(IMAGES[1][:20], algorithm, block=512)
    for end in range(len(data)):
        with pytest.raises(DecodeError) as caught:
            decompress(data[:end], algorithm, 2, 1 << 30)
        assert caught.value.reason == "compression"


def test_an_array_claiming_more_than_the_limit_is_refused_before_decompressing():
    data = compress(IMAGES[1], "bslz4")
    with pytest.raises(DecodeError) as caught:
        decompress(data, "bslz4", 2, 1000)
    assert caught.value.reason == "size"


@pytest.mark.parametrize("reason,data", malformed_messages(), ids=lambda v: str(v)[:12])
def test_each_malformed_message_is_refused_with_its_reason(reason, data):
    with pytest.raises(DecodeError) as caught:
        Decoder().decode(data)
    assert caught.value.reason == reason
