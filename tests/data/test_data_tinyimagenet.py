"""TinyImageNet from a generated tree in the official layout (JPEGs via Pillow)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from nobound.data import DataError, load_dataset

Image = pytest.importorskip("PIL.Image")


def test_tinyimagenet_train_and_val(tmp_path, make_tinyimagenet):
    expected = make_tinyimagenet(tmp_path / "tiny-imagenet-200")
    train = load_dataset("tinyimagenet", "train", data_dir=tmp_path, verify=False)
    assert train.pixels.shape == (9, 3, 64, 64) and train.pixels.dtype == np.uint8
    assert train.class_names == ("n01", "n02", "n03")  # sorted, as ImageFolder
    np.testing.assert_array_equal(train.labels, expected["train"][1])
    # flat colours survive JPEG up to small rounding
    colours = train.pixels.mean(axis=(2, 3))
    np.testing.assert_allclose(colours, expected["train"][0], atol=3)
    test = load_dataset("tinyimagenet", "test", data_dir=tmp_path, verify=False)
    val = load_dataset("tinyimagenet", "val", data_dir=tmp_path, verify=False)
    assert test.split == val.split == "test"
    np.testing.assert_array_equal(test.pixels, val.pixels)
    np.testing.assert_array_equal(test.labels, expected["test"][1])
    np.testing.assert_allclose(test.pixels.mean(axis=(2, 3)), expected["test"][0], atol=3)
    assert test.num_classes == 200 and test.input_shape == (3, 64, 64)


def test_tinyimagenet_limit_grayscale_and_checks(tmp_path, make_tinyimagenet):
    root = tmp_path / "tiny-imagenet-200"
    make_tinyimagenet(root)
    gray = root / "train" / "n01" / "images" / "n01_0.JPEG"
    Image.new("L", (64, 64), 77).save(gray)
    ds = load_dataset("tinyimagenet", "train", data_dir=root, verify=False, limit=2)
    assert len(ds) == 2 and abs(int(ds.pixels[0].mean()) - 77) <= 2
    with pytest.raises(DataError, match="canonical") as info:
        load_dataset("tinyimagenet", "train", data_dir=root)
    assert str(root) in str(info.value)

    Image.new("RGB", (32, 32)).save(gray)
    with pytest.raises(DataError, match="expected 64x64") as info:
        load_dataset("tinyimagenet", "train", data_dir=root, verify=False)
    assert str(gray) in str(info.value)
    gray.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot decode") as info:
        load_dataset("tinyimagenet", "train", data_dir=root, verify=False)
    assert str(gray) in str(info.value)


def test_tinyimagenet_bad_annotations(tmp_path, make_tinyimagenet):
    root = tmp_path / "tiny-imagenet-200"
    make_tinyimagenet(root)
    ann = root / "val" / "val_annotations.txt"
    ann.write_text("val_0.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="line 1") as info:
        load_dataset("tinyimagenet", "test", data_dir=tmp_path, verify=False)
    assert str(ann) in str(info.value)


def test_missing_pillow_is_a_clear_error(tmp_path, make_tinyimagenet, monkeypatch):
    make_tinyimagenet(tmp_path / "tiny-imagenet-200")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match="pip install pillow"):
        load_dataset("tinyimagenet", "test", data_dir=tmp_path, verify=False)
