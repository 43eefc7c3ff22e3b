"""MNIST and Fashion-MNIST from the real files (skipped where they are absent)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from nobound.data import DataError, load_dataset
from nobound.data.checksums import IDX_SHA256, digest_bytes
from nobound.data.idx import read_payload

# The real files are read in place (never copied into the repository).
REAL_DATA_ROOT = Path(os.environ.get("NOBOUND_DATA", "/work/shared/data").split(os.pathsep)[0])
MNIST_DIR = REAL_DATA_ROOT / "mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                                 reason=f"real MNIST not found in {MNIST_DIR} (set NOBOUND_DATA)")
needs_fashion = pytest.mark.skipif(not (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                                   reason="apt-get install dataset-fashion-mnist")


@needs_mnist
def test_real_mnist_checksums_shapes_and_mean():
    for name, sha in IDX_SHA256["mnist"].items():
        assert digest_bytes(read_payload(MNIST_DIR / name)) == sha, name
    train = load_dataset("mnist", "train", data_dir=REAL_DATA_ROOT)
    test = load_dataset("mnist", "test", data_dir=REAL_DATA_ROOT)
    assert train.pixels.shape == (60000, 1, 28, 28) and test.pixels.shape == (10000, 1, 28, 28)
    assert train.labels.dtype == np.int64 and train.labels.shape == (60000,)
    assert train.pixels.mean() / 255 == pytest.approx(0.1306604762738429, rel=1e-12)
    assert train.images.dtype == np.float32
    assert train.images.mean(dtype=np.float64) == pytest.approx(0.1306604762738429, rel=1e-6)
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    np.testing.assert_array_equal(train.class_counts(), [5923, 6742, 5958, 6131, 5842, 5421,
                                                         5918, 6265, 5851, 5949])
    assert (train.mean, train.std, train.num_classes) == ((0.1307,), (0.3081,), 10)
    assert train.input_shape == (1, 28, 28)


@needs_mnist
def test_real_mnist_via_env_and_direct_folder(monkeypatch):
    monkeypatch.setenv("NOBOUND_DATA", str(REAL_DATA_ROOT))
    assert len(load_dataset("mnist", "test", limit=100)) == 100
    assert len(load_dataset("mnist", "test", data_dir=MNIST_DIR)) == 10000


@needs_mnist
def test_real_mnist_corrupted_copy(tmp_path):
    """A damaged copy of a real file (in tmp, never in the repo) is rejected by name."""
    folder = tmp_path / "mnist"
    shutil.copytree(MNIST_DIR, folder)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    target.chmod(0o644)
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    target.write_bytes(bytes(raw))
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "test", data_dir=tmp_path)
    assert str(target) in str(info.value)
    with pytest.raises(DataError):
        load_dataset("mnist", "test", data_dir=tmp_path, verify=False)  # gzip CRC still fails


@needs_fashion
def test_fashion_mnist_from_debian_package():
    test = load_dataset("fashion-mnist", "test")  # found via the system location
    assert test.source == str(FASHION_DIR)
    assert test.pixels.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(test.class_counts(), [1000] * 10)
    assert (test.mean, test.std) == ((0.2860,), (0.3530,))
    assert test.class_names[9] == "Ankle boot"
