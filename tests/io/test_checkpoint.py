"""Checkpoints: exact round trip, atomic writes, and clear errors for bad files."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from nobound.autodiff.tensor import Tensor
from nobound.io.architecture import build_model_from_description, describe_model
from nobound.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nobound.nn import conv_net, kaiming_uniform
from nobound.training.losses import cross_entropy
from nobound.training.optim import Adam


def small_model(dtype=np.float64):
    model = conv_net((1, 8, 8), 3, [(4, 3, 2, 1)], [6], batchnorm=True,
                     normalize=((0.5,), (0.25,)), dtype=dtype)
    return kaiming_uniform(model, 0)


def trained_state(model):
    """One Adam step so that the optimiser and BatchNorm buffers hold real state."""
    optimizer = Adam(dict(model.named_parameters()), lr=1e-2)
    x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(model.parameters()[0].dtype)
    cross_entropy(model(Tensor(x)), np.arange(5) % 3).backward()
    optimizer.step()
    return optimizer, x


def write(path, model, optimizer, **extra):
    return save_checkpoint(path, model, architecture=describe_model(model, (1, 8, 8), 3, "tiny"),
                           config={"trainer": {"lr": 0.01}, "run": {"dataset": "x"}},
                           method={"name": "pgd", "options": {"steps": 3}},
                           counters={"epoch": 1, "step": 7, "batch_index": 2, "seed": 4},
                           optimizer_state=optimizer.state_dict(),
                           method_state={"sigma": np.full(3, 0.5), "count": 3}, **extra)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_exact(tmp_path, dtype):
    model = small_model(dtype)
    optimizer, x = trained_state(model)
    path = write(tmp_path / "ckpt.h5", model, optimizer)
    loaded = load_checkpoint(path)
    for name, value in model.state_dict().items():
        stored = loaded.model.state_dict()[name]
        assert stored.dtype == np.asarray(value).dtype and np.array_equal(stored, value), name
    model.eval()
    loaded.model.eval()
    assert np.array_equal(model(Tensor(x)).data, loaded.model(Tensor(x)).data)
    restored = Adam(dict(loaded.model.named_parameters()), lr=1.0)
    restored.load_state_dict(loaded.optimizer_state)
    assert restored.step_count == optimizer.step_count and restored.lr == optimizer.lr
    assert set(restored.state) == set(optimizer.state)
    assert all(np.array_equal(restored.state[k], v) for k, v in optimizer.state.items())
    assert loaded.counters == {"epoch": 1, "step": 7, "batch_index": 2, "seed": 4}
    assert loaded.method == {"name": "pgd", "options": {"steps": 3}}
    assert loaded.config["run"] == {"dataset": "x"}
    assert loaded.method_state["count"] == 3
    assert np.array_equal(loaded.method_state["sigma"], np.full(3, 0.5))
    assert loaded.architecture["input_shape"] == [1, 8, 8]


def test_architecture_description_rebuilds_the_same_layers():
    model = small_model()
    rebuilt = build_model_from_description(describe_model(model))
    assert [repr(a) for a in model.layers] == [repr(b) for b in rebuilt.layers]
    assert {k: np.shape(v) for k, v in model.state_dict().items()} == \
        {k: np.shape(v) for k, v in rebuilt.state_dict().items()}


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    model = small_model()
    optimizer, _ = trained_state(model)
    path = write(tmp_path / "ckpt.h5", model, optimizer)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(path, model, architecture=describe_model(model),
                        config={"not json": object()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.h5"]


def test_truncated_file_is_an_error_naming_it(tmp_path):
    model = small_model()
    path = write(tmp_path / "ckpt.h5", model, trained_state(model)[0])
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_flipped_weight_byte_fails_the_checksum(tmp_path):
    model = small_model()
    path = write(tmp_path / "ckpt.h5", model, trained_state(model)[0])
    with h5py.File(path, "r") as handle:
        offset = handle["model/5.weight"].id.get_offset()
    data = bytearray(path.read_bytes())
    data[offset + 5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"ckpt\.h5.*model/5\.weight.*SHA-256"):
        load_checkpoint(path)


def test_non_checkpoint_files_are_errors_naming_them(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=f"{text}: not a readable HDF5 file"):
        load_checkpoint(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle["weights"] = np.zeros(3)
    with pytest.raises(CheckpointError, match=f"{foreign}: not a nobound checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.h5")
