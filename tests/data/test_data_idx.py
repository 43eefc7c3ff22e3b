"""The strict IDX reader: round trips, and every kind of damage gives a DataError that
names the file."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nobound.data import DataError
from nobound.data.checksums import digest_bytes
from nobound.data.idx import encode_idx, parse_idx, read_idx, read_payload, write_idx
from nobound.data.mnist import read_mnist_split


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)))
def test_parse_roundtrip(array):
    np.testing.assert_array_equal(parse_idx(encode_idx(array)), array)


@pytest.mark.parametrize("dtype,code", [(">i2", 0x0B), (">i4", 0x0C), (">f4", 0x0D),
                                        (">f8", 0x0E), ("i1", 0x09)])
def test_parse_other_element_types(dtype, code):
    array = np.arange(12, dtype=dtype).reshape(3, 4)
    payload = bytes([0, 0, code, 2]) + struct.pack(">2I", 3, 4) + array.tobytes()
    out = parse_idx(payload)
    np.testing.assert_array_equal(out, array)
    assert out.dtype.isnative


def test_read_gz_and_plain_with_checksum(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    sha = write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "a", array)
    for name in ("a.gz", "a"):
        np.testing.assert_array_equal(read_idx(tmp_path / name, sha256=sha, ndim=3), array)


def _assert_names(exc_info, path):
    assert str(path) in str(exc_info.value)
    assert exc_info.value.path == path


@pytest.fixture
def labels_gz(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(200, dtype=np.uint8) % 10)
    return path


def test_data_error_is_value_error():
    assert issubclass(DataError, ValueError)


def test_truncated_gzip(labels_gz):
    labels_gz.write_bytes(labels_gz.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated gzip") as info:
        read_payload(labels_gz)
    _assert_names(info, labels_gz)


@pytest.mark.parametrize("where", [0, 3, 20, -6, -2])
def test_flipped_byte_in_gzip(labels_gz, where):
    raw = bytearray(labels_gz.read_bytes())
    raw[where] ^= 0xFF
    labels_gz.write_bytes(bytes(raw))
    with pytest.raises(DataError) as info:
        read_idx(labels_gz, ndim=1)
    _assert_names(info, labels_gz)


def test_flipped_byte_in_payload_fails_checksum(tmp_path):
    path = tmp_path / "x.gz"
    array = np.zeros((5, 4, 4), np.uint8)
    sha = write_idx(path, array)
    payload = bytearray(encode_idx(array))
    payload[-1] ^= 1
    path.write_bytes(gzip.compress(bytes(payload)))  # a valid gzip of the wrong payload
    with pytest.raises(DataError, match="SHA-256") as info:
        read_idx(path, sha256=sha)
    _assert_names(info, path)
    assert read_idx(path)[-1, -1, -1] == 1  # without a checksum it is just a modified file


@pytest.mark.parametrize("header,match", [
    (b"\x00\x01\x08\x01", "magic"),        # leading bytes not zero
    (b"\x00\x00\x07\x01", "element type"),  # unknown type code
    (b"\x00\x00\x08\x03", "3"),             # wrong rank for a label file
    (b"\x00\x00\x08\x00", "zero dimensions"),
])
def test_wrong_magic(labels_gz, header, match):
    payload = gzip.decompress(labels_gz.read_bytes())
    labels_gz.write_bytes(gzip.compress(header + payload[4:]))
    with pytest.raises(DataError, match=match) as info:
        read_idx(labels_gz, ndim=1)
    _assert_names(info, labels_gz)


@pytest.mark.parametrize("delta", [-1, +1, -100])
def test_wrong_size(labels_gz, delta):
    payload = gzip.decompress(labels_gz.read_bytes())
    payload = payload[:delta] if delta < 0 else payload + b"\x00" * delta
    labels_gz.write_bytes(gzip.compress(payload))
    with pytest.raises(DataError, match="size mismatch") as info:
        read_idx(labels_gz)
    _assert_names(info, labels_gz)


def test_truncated_header_and_missing_file(tmp_path):
    path = tmp_path / "h"
    path.write_bytes(b"\x00\x00\x08\x02\x00\x00")
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(path)
    with pytest.raises(DataError, match="not found") as info:
        read_idx(tmp_path / "missing.gz")
    _assert_names(info, tmp_path / "missing.gz")


def test_mnist_pair_consistency(tmp_path, make_mnist):
    make_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="labels") as info:
        read_mnist_split(tmp_path, "test", verify=False)
    _assert_names(info, tmp_path / "t10k-labels-idx1-ubyte.gz")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(7, 10, np.uint8))
    with pytest.raises(DataError, match="out of range"):
        read_mnist_split(tmp_path, "test", verify=False)


def test_generated_mnist_needs_verify_false(tmp_path, make_mnist):
    arrays, _ = make_mnist(tmp_path)
    with pytest.raises(DataError, match="verify=False") as info:
        read_mnist_split(tmp_path, "train")
    _assert_names(info, tmp_path / "train-images-idx3-ubyte.gz")
    x, y = read_mnist_split(tmp_path, "train", verify=False)
    np.testing.assert_array_equal(x[:, 0], arrays["train"][0])
    assert y.dtype == np.int64 and x.shape == (12, 1, 28, 28)


def test_uncompressed_files_are_accepted(tmp_path, make_mnist):
    arrays, _ = make_mnist(tmp_path)
    for path in tmp_path.glob("*.gz"):
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    x, y = read_mnist_split(tmp_path, "test", verify=False)
    np.testing.assert_array_equal(y, arrays["test"][1])


def test_digest_helpers():
    assert digest_bytes(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
