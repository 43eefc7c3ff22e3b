"""CIFAR-10 python batches, generated in the official pickle format."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from nobound.data import DataError, load_dataset
from nobound.data.cifar import read_cifar_batch


def test_cifar_train_and_test(tmp_path, make_cifar):
    arrays = make_cifar(tmp_path / "cifar-10-batches-py")
    for split, n in (("train", 30), ("test", 6)):
        ds = load_dataset("cifar10", split, data_dir=tmp_path, verify=False)
        assert ds.pixels.shape == (n, 3, 32, 32) and ds.pixels.dtype == np.uint8
        np.testing.assert_array_equal(ds.pixels, arrays[split][0])
        np.testing.assert_array_equal(ds.labels, arrays[split][1])
        assert ds.images.shape == (n, 3, 32, 32) and ds.images.max() <= 1.0
    assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2470, 0.2435, 0.2616)
    assert ds.class_names[0] == "airplane"


def test_cifar_channel_layout(tmp_path, make_cifar):
    """Row 0 of b'data' is 1024 red, 1024 green, 1024 blue values, each row-major."""
    arrays = make_cifar(tmp_path)
    flat = pickle.loads((tmp_path / "test_batch").read_bytes(), encoding="bytes")[b"data"]
    ds = load_dataset("cifar10", "test", data_dir=tmp_path, verify=False)
    assert ds.pixels[0, 1, 2, 3] == flat[0, 1024 + 2 * 32 + 3]
    np.testing.assert_array_equal(arrays["test"][0], ds.pixels)


def test_cifar_checksum_names_file(tmp_path, make_cifar):
    make_cifar(tmp_path)
    with pytest.raises(DataError, match="MD5") as info:
        load_dataset("cifar10", "test", data_dir=tmp_path)
    assert str(tmp_path / "test_batch") in str(info.value)


def test_cifar_limit_reads_only_needed_batches(tmp_path, make_cifar):
    make_cifar(tmp_path, per_batch=4)
    for i in (3, 4, 5):
        (tmp_path / f"data_batch_{i}").unlink()
    ds = load_dataset("cifar10", "train", data_dir=tmp_path, verify=False, limit=7)
    assert len(ds) == 7
    with pytest.raises(DataError, match="not found"):
        load_dataset("cifar10", "train", data_dir=tmp_path, verify=False)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("payload,match", [
    (pickle.dumps({b"data": _Evil(), b"labels": []}), "refusing"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}), "labels"),
    (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}), "3072"),
    (pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}), "range"),
    (pickle.dumps([1, 2, 3]), "dict"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]})[:-20],
     "readable"),
])
def test_cifar_bad_batches(tmp_path, payload, match, capsys):
    path = tmp_path / "test_batch"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=match) as info:
        read_cifar_batch(path)
    assert str(path) in str(info.value)
    assert "pwned" not in capsys.readouterr().out
