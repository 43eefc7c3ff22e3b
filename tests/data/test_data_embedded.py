"""The Fashion-MNIST subset shipped in the package."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from nobound.data import DataError, load_dataset
from nobound.data.build_embedded import balanced_indices, build
from nobound.data.embedded import EMBEDDED_PATH, load_embedded

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def test_embedded_loads_offline():
    assert EMBEDDED_PATH.stat().st_size < 2.5e6
    train = load_dataset("fashion-mnist-embedded")
    test = load_dataset("fashion-mnist-embedded", "test")
    assert train.images.shape == (2000, 1, 28, 28) and test.images.shape == (500, 1, 28, 28)
    np.testing.assert_array_equal(train.class_counts(), [200] * 10)
    np.testing.assert_array_equal(test.class_counts(), [50] * 10)
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    assert train.pixels.dtype == np.uint8 and train.labels.dtype == np.int64
    assert (train.mean, train.std, train.num_classes) == ((0.2860,), (0.3530,), 10)
    assert abs(train.images.mean() - 0.286) < 0.03  # a fair sample of Fashion-MNIST
    assert len(load_dataset("fashion-mnist-embedded", "test", limit=10)) == 10


def test_embedded_tampering_detected(tmp_path):
    copy = tmp_path / "subset.npz"
    with np.load(EMBEDDED_PATH) as npz:
        arrays = dict(npz)
    arrays["test_images"][0, 0, 0] ^= 1
    np.savez_compressed(copy, **arrays)
    with pytest.raises(DataError, match="SHA-256") as info:
        load_embedded("test", path=copy)
    assert str(copy) in str(info.value)
    load_embedded("train", path=copy)  # the untouched split still loads
    with pytest.raises(DataError, match="missing"):
        load_embedded("test", path=tmp_path / "absent.npz")


def test_balanced_indices():
    labels = np.array([0, 1, 0, 2, 1, 0, 2, 2, 1])
    np.testing.assert_array_equal(balanced_indices(labels, 2, 3), [0, 1, 2, 3, 4, 6])
    with pytest.raises(ValueError, match="only"):
        balanced_indices(labels, 4, 3)


@pytest.mark.skipif(not (DEBIAN / "train-images-idx3-ubyte.gz").exists(),
                    reason="apt-get install dataset-fashion-mnist")
def test_build_script_reproduces_shipped_file(tmp_path):
    out = tmp_path / "rebuilt.npz"
    build(DEBIAN, out)
    assert out.read_bytes() == EMBEDDED_PATH.read_bytes()


def test_build_from_generated_source_is_deterministic(tmp_path, make_mnist, monkeypatch):
    from nobound.data import checksums

    source = tmp_path / "src"
    _, digests = make_mnist(source, n_train=3000, n_test=800)
    monkeypatch.setitem(checksums.IDX_SHA256, "fashion-mnist", digests)
    build(source, tmp_path / "a.npz")
    build(source, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    shutil.copy(tmp_path / "a.npz", tmp_path / "c.npz")
    x, y = load_embedded("test", path=tmp_path / "c.npz", verify=False)
    assert x.shape == (500, 1, 28, 28) and np.bincount(y).tolist() == [50] * 10
