"""Augmentations: shapes, crop = translation of the zero-padded image, flip is an
involution, determinism given the seed, and vectorised (array-module agnostic) code."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.backend import random_stream
from nobound.data import (
    Augmentation,
    crop_at,
    default_augmentation,
    flip_where,
    get_augmentation,
    random_crop,
    random_flip,
)


def _batch(n=6, c=3, h=8, w=9, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.random((n, c, h, w)).astype(dtype) + 0.5  # strictly positive: padding is 0


def _windows(image, padding):
    c, h, w = image.shape
    padded = np.pad(image, ((0, 0), (padding, padding), (padding, padding)))
    return [padded[:, dy:dy + h, dx:dx + w] for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 5), h=st.integers(1, 7), w=st.integers(1, 7),
       padding=st.integers(0, 4), seed=st.integers(0, 2**32))
def test_crop_is_translation_of_padded_image(n, h, w, padding, seed):
    x = _batch(n, 2, h, w, seed % 1000)
    rng = np.random.default_rng(seed)
    dy, dx = rng.integers(0, 2 * padding + 1, (2, n))
    out = crop_at(x, padding, dy, dx)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    for i in range(n):
        np.testing.assert_array_equal(out[i], padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w])


def test_random_crop_output_is_some_window():
    x = _batch()
    out = random_crop(x, 2, np.random.default_rng(1))
    for i in range(len(x)):
        assert any(np.array_equal(out[i], win) for win in _windows(x[i], 2))


def test_crop_offsets_cover_range_and_zero_shift_is_identity():
    x = _batch(n=400, c=1, h=4, w=4)
    out = random_crop(x, 1, 0)
    zeros_top = (out[:, 0, 0, :] == 0).all(axis=1).mean()
    assert 0.2 < zeros_top < 0.45  # dy == 0 with probability 1/3
    np.testing.assert_array_equal(crop_at(x, 3, np.full(400, 3), np.full(400, 3)), x)
    np.testing.assert_array_equal(crop_at(x, 0, np.zeros(400), np.zeros(400)), x)


def test_flip_is_involution_and_mirrors():
    x = _batch()
    mask = np.array([True, False, True, True, False, False])
    once = flip_where(x, mask)
    np.testing.assert_array_equal(flip_where(once, mask), x)
    np.testing.assert_array_equal(once[mask], x[mask][..., ::-1])
    np.testing.assert_array_equal(once[~mask], x[~mask])
    flipped = random_flip(x, 7)
    for i in range(len(x)):
        assert np.array_equal(flipped[i], x[i]) or np.array_equal(flipped[i], x[i, :, :, ::-1])


def test_deterministic_given_seed_and_uint8():
    x = (_batch(n=32) * 100).astype(np.uint8)
    aug = get_augmentation("cifar10")
    a = aug(x, random_stream(3, 1, 2, name="augment"))
    b = aug(x, random_stream(3, 1, 2, name="augment"))
    c = aug(x, random_stream(3, 1, 3, name="augment"))
    assert a.dtype == np.uint8 and a.shape == x.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(aug(x, 5), aug(x, 5))  # int seeds work too


def test_named_defaults():
    assert default_augmentation("mnist").is_identity
    assert default_augmentation("fashion-mnist-embedded").is_identity
    assert default_augmentation("cifar10") == Augmentation(padding=2, flip=True)
    assert default_augmentation("tinyimagenet") == Augmentation(padding=4, flip=True)
    x = _batch(n=3, h=64, w=64)
    assert default_augmentation("tinyimagenet")(x, 0).shape == (3, 3, 64, 64)
    np.testing.assert_array_equal(default_augmentation("mnist")(x, 0), x)
    with pytest.raises(ValueError, match="unknown augmentation"):
        get_augmentation("rotate")


def test_cupy_matches_numpy():
    cupy = pytest.importorskip("cupy")
    from nobound.backend import cupy_available

    if not cupy_available():
        pytest.skip("no GPU")
    x = _batch(n=16)
    aug = get_augmentation("cifar10")
    on_gpu = aug(cupy.asarray(x), np.random.default_rng(0))
    assert isinstance(on_gpu, cupy.ndarray)
    np.testing.assert_array_equal(on_gpu.get(), aug(x, np.random.default_rng(0)))
