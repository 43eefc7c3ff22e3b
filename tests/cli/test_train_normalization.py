"""App. F.5: MNIST is trained on raw pixels ("we do not apply any preprocessing"); every
other dataset keeps its per-channel normalisation; ``--normalize`` chooses explicitly."""

from __future__ import annotations

import json

import pytest

from nobound.cli import main
from nobound.cli.train import resolve_normalization
from nobound.io.checkpoint import load_checkpoint
from nobound.nn.normalization import Normalize

TINY = ["--dataset", "fashion-mnist-embedded", "--limit", "40", "--epochs", "1",
        "--batch-size", "40", "--eval-limit", "0", "--quiet"]


@pytest.mark.parametrize(("choice", "dataset", "expected"), [
    ("auto", "mnist", "none"), ("auto", "MNIST", "none"),
    ("auto", "fashion-mnist", "dataset"), ("auto", "cifar10", "dataset"),
    ("dataset", "mnist", "dataset"), ("none", "cifar10", "none")])
def test_auto_follows_appendix_f5(choice, dataset, expected):
    assert resolve_normalization(choice, dataset) == expected


@pytest.mark.parametrize(("flag", "has_normalize"), [("none", False), ("dataset", True)])
def test_the_trained_model_has_a_normalize_layer_only_when_asked(tmp_path, flag,
                                                                 has_normalize):
    out = tmp_path / "run"
    assert main(["train", "--arch", "cnn3_tiny", "--normalize", flag, "--out", str(out),
                 *TINY]) == 0
    assert json.loads((out / "config.json").read_text())["run"]["normalize"] == flag
    model = load_checkpoint(out / "model.h5").model
    assert any(isinstance(layer, Normalize) for layer in model.layers) == has_normalize
