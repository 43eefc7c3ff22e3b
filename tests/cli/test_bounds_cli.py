"""``nobound bounds``: prints bounds (text/JSON) and saves the matrices of a layer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nobound.bounds import LinearBounds, compute_bounds, linf_ball, margin_spec
from nobound.cli import main
from nobound.io.architecture import describe_model
from nobound.io.checkpoint import save_checkpoint
from nobound.nn import build_model, kaiming_uniform


@pytest.fixture
def checkpoint(tmp_path):
    model = kaiming_uniform(build_model("cnn3_tiny", (1, 12, 12), 4), 0)
    path = save_checkpoint(tmp_path / "model.h5", model,
                           architecture=describe_model(model, (1, 12, 12), 4))
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return model, path, x, tmp_path


def test_json_bounds_equal_the_api(checkpoint, capsys):
    model, path, x, tmp_path = checkpoint
    status = main(["bounds", "--model", str(path), "--input", str(tmp_path / "x.npy"),
                   "--index", "1", "--label", "2", "--eps", "0.05", "--json"])
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    expected = compute_bounds(model, linf_ball(x[1:2], 0.05), method="deeppoly",
                              spec=margin_spec(np.array([2]), 4))
    np.testing.assert_allclose(report["lower"], expected.lower.data[0], rtol=1e-6)
    assert report["others"] == [0, 1, 3]
    assert report["certified"] == bool(np.all(expected.lower.data > 0))


def test_layer_matrices_are_printed_and_saved(checkpoint, capsys):
    _, path, _, tmp_path = checkpoint
    target = tmp_path / "layer.npz"
    status = main(["bounds", "--model", str(path), "--input", str(tmp_path / "x.npy"),
                   "--eps", "0.05", "--method", "crown-ibp", "--layer", "2",
                   "--save-matrices", str(target)])
    assert status == 0
    out = capsys.readouterr().out
    assert "A_l =" in out and "A_u =" in out and "y_3:" in out
    saved = LinearBounds.load(target)
    assert saved.A_l.shape == (1, 2 * 3 * 3, 1, 12, 12)


def test_bad_usage_is_one_line_and_status_2(checkpoint, capsys):
    _, path, _, tmp_path = checkpoint
    status = main(["bounds", "--model", str(path), "--input", str(tmp_path / "x.npy"),
                   "--eps", "0.05", "--method", "box"])
    assert status == 2
    assert "unknown bound method" in capsys.readouterr().err
    status = main(["bounds", "--model", str(tmp_path / "missing.h5"), "--eps", "0.1"])
    assert status == 2
