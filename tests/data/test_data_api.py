"""load_dataset, dataset metadata and data-directory resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nobound.data import (
    ENV_VAR,
    DataError,
    Dataset,
    DatasetNotFoundError,
    available_datasets,
    find_dataset_dir,
    get_spec,
    load_dataset,
    locate,
    to_unit_float,
)


def test_names_and_metadata():
    assert available_datasets() == ["mnist", "fashion-mnist", "fashion-mnist-embedded",
                                    "cifar10", "tinyimagenet"]
    assert get_spec("CIFAR-10").name == "cifar10" and get_spec("tin").name == "tinyimagenet"
    assert get_spec("mnist").mean == (0.1307,) and get_spec("mnist").std == (0.3081,)
    assert get_spec("cifar10").std == (0.2470, 0.2435, 0.2616)
    assert get_spec("tinyimagenet").input_shape == (3, 64, 64)
    mean, std = get_spec("cifar10").normalization(dtype=np.float32)
    assert mean.shape == (1, 3, 1, 1) and std.dtype == np.float32
    with pytest.raises(ValueError, match="unknown dataset"):
        get_spec("imagenet")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("mnist", "val")


def test_env_var_and_direct_folder(tmp_path, make_mnist, monkeypatch):
    arrays, _ = make_mnist(tmp_path / "root" / "mnist")
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "root"))
    ds = load_dataset("mnist", "train", verify=False, limit=5)
    assert len(ds) == 5 and ds.source == str(tmp_path / "root" / "mnist")
    np.testing.assert_array_equal(ds.pixels[:, 0], arrays["train"][0][:5])
    assert find_dataset_dir("mnist", tmp_path / "root" / "mnist") == tmp_path / "root" / "mnist"
    monkeypatch.setenv(ENV_VAR, f"{tmp_path / 'nothing'}:{tmp_path / 'root'}")
    assert find_dataset_dir("mnist") == tmp_path / "root" / "mnist"


def test_missing_dataset_error_explains(tmp_path, monkeypatch):
    monkeypatch.setattr(locate, "SYSTEM_DIRS", {})
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "fashion-mnist") in message
    assert "train-labels-idx1-ubyte.gz" in message
    assert ENV_VAR in message and "download=True" in message
    assert isinstance(info.value, DataError)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "envroot"))
    with pytest.raises(DatasetNotFoundError, match="envroot"):
        load_dataset("cifar10")


def test_fashion_system_location(tmp_path, make_mnist, monkeypatch):
    make_mnist(tmp_path / "sys")
    monkeypatch.setattr(locate, "SYSTEM_DIRS", {"fashion-mnist": (tmp_path / "sys",)})
    assert load_dataset("fashion-mnist", "test", verify=False).source == str(tmp_path / "sys")


def test_dataset_container():
    pixels = np.arange(2 * 1 * 2 * 2, dtype=np.uint8).reshape(2, 1, 2, 2) * 30
    ds = Dataset("mnist", "train", pixels, np.array([3, 1]), get_spec("mnist"))
    assert ds.images is ds.images  # cached
    np.testing.assert_allclose(ds.images, pixels / 255, rtol=1e-6)
    sub = ds.subset([1])
    assert len(sub) == 1 and sub.labels.tolist() == [1] and sub.name == "mnist"
    assert ds.head(1).labels.tolist() == [3]
    assert "n=2" in repr(ds)
    assert to_unit_float(np.array([0.5]), np.float64).dtype == np.float64
    with pytest.raises(ValueError):
        Dataset("mnist", "train", pixels, np.array([1]), get_spec("mnist"))


def test_limit_zero_and_negative(tmp_path, make_mnist):
    make_mnist(tmp_path / "mnist")
    assert len(load_dataset("mnist", data_dir=tmp_path, verify=False, limit=0)) == 0
    with pytest.raises(ValueError):
        load_dataset("mnist", data_dir=tmp_path, verify=False, limit=-1)
    assert Path(load_dataset("mnist", data_dir=tmp_path, verify=False).source).name == "mnist"
