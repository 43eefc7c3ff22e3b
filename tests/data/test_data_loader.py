"""BatchLoader: coverage, deterministic shuffling by (seed, epoch), resume at a batch."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.backend import random_stream
from nobound.data import BatchLoader, Dataset, get_spec, load_dataset


def _data(n=23):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    return Dataset("cifar10", "train", pixels, np.arange(n) % 10, get_spec("cifar10"))


def _collect(batches):
    return [(x.copy(), y.copy()) for x, y in batches]


@pytest.mark.parametrize("drop_last,expected", [(False, 5), (True, 4)])
def test_len_and_coverage(drop_last, expected):
    loader = BatchLoader(_data(), 5, drop_last=drop_last, seed=1)
    assert len(loader) == expected
    batches = _collect(loader.epoch(0))
    assert len(batches) == expected
    sizes = [len(y) for _, y in batches]
    assert sizes == ([5, 5, 5, 5, 3] if not drop_last else [5, 5, 5, 5])
    if not drop_last:
        seen = np.concatenate([y for _, y in batches])
        assert sorted(seen.tolist()) == sorted((np.arange(23) % 10).tolist())


def test_batches_are_floats_in_unit_interval():
    data = _data()
    x, y = next(iter(BatchLoader(data, 4, shuffle=False)))
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, data.pixels[:4] / np.float32(255))
    x64, _ = next(iter(BatchLoader(data, 4, shuffle=False, dtype=np.float64)))
    assert x64.dtype == np.float64


def test_shuffle_is_a_function_of_seed_and_epoch():
    data = _data()
    a, b = BatchLoader(data, 4, seed=3), BatchLoader(data, 4, seed=3)
    np.testing.assert_array_equal(a.permutation(2),
                                  random_stream(3, 2, name="shuffle").permutation(23))
    for (xa, ya), (xb, yb) in zip(a.epoch(2), b.epoch(2), strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a.permutation(0), a.permutation(1))
    assert not np.array_equal(a.permutation(0), BatchLoader(data, 4, seed=4).permutation(0))
    np.testing.assert_array_equal(BatchLoader(data, 4, shuffle=False).permutation(5),
                                  np.arange(23))


@pytest.mark.parametrize("augmentation", [None, "default"])
@pytest.mark.parametrize("start", [0, 1, 3, 5])
def test_resume_at_batch_is_bit_for_bit(augmentation, start):
    data = _data()
    full = _collect(BatchLoader(data, 5, seed=9, augmentation=augmentation).epoch(4))
    # a fresh loader (as after a restart) resuming at batch `start`
    resumed = _collect(BatchLoader(data, 5, seed=9, augmentation=augmentation)
                       .epoch(4, start=start))
    assert len(resumed) == len(full) - start
    for (xf, yf), (xr, yr) in zip(full[start:], resumed, strict=True):
        assert xf.tobytes() == xr.tobytes() and yf.tobytes() == yr.tobytes()


def test_augmentation_changes_batches_deterministically():
    data = _data()
    plain = _collect(BatchLoader(data, 5, seed=0).epoch(0))
    aug = _collect(BatchLoader(data, 5, seed=0, augmentation="default").epoch(0))
    assert any(not np.array_equal(p[0], a[0]) for p, a in zip(plain, aug, strict=True))
    for (_, yp), (_, ya) in zip(plain, aug, strict=True):
        np.testing.assert_array_equal(yp, ya)  # same order, only pixels change


def test_iter_uses_set_epoch_and_tuple_input():
    data = _data()
    loader = BatchLoader((data.pixels, data.labels), 6, seed=2)
    loader.set_epoch(7)
    first = next(iter(loader))[1]
    np.testing.assert_array_equal(first, data.labels[loader.permutation(7)[:6]])
    with pytest.raises(ValueError, match="needs a Dataset"):
        BatchLoader((data.pixels, data.labels), 6, augmentation="default")


def test_device_cpu_and_errors():
    data = _data()
    x, _ = next(iter(BatchLoader(data, 4, device="cpu", resident=True)))
    assert isinstance(x, np.ndarray)
    loader = BatchLoader(data, 4)
    with pytest.raises(IndexError):
        list(loader.epoch(0, start=len(loader) + 1))
    assert list(loader.epoch(0, start=len(loader))) == []
    with pytest.raises(ValueError):
        BatchLoader(data, 0)


def test_embedded_dataset_through_loader():
    train = load_dataset("fashion-mnist-embedded", "train")
    loader = BatchLoader(train, 256, seed=0, augmentation="default", drop_last=True)
    assert len(loader) == 7
    x, y = next(iter(loader))
    assert x.shape == (256, 1, 28, 28) and y.shape == (256,)


def test_cuda_device_transfer():
    cupy = pytest.importorskip("cupy")
    from nobound.backend import cupy_available

    if not cupy_available():
        pytest.skip("no GPU")
    data = _data()
    cpu = _collect(BatchLoader(data, 5, seed=1, augmentation="default").epoch(0))
    for resident in (False, True):
        gpu = list(BatchLoader(data, 5, seed=1, augmentation="default", device="cuda",
                               resident=resident).epoch(0))
        for (xc, yc), (xg, yg) in zip(cpu, gpu, strict=True):
            assert isinstance(xg, cupy.ndarray)
            np.testing.assert_array_equal(xc, xg.get())
            np.testing.assert_array_equal(yc, yg.get())
