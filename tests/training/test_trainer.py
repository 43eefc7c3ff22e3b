"""Trainer: bit-for-bit resume, clipping, lr milestones, checkpoint bookkeeping, progress."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from nobound.data import Augmentation, BatchLoader
from nobound.nn import conv_net, kaiming_uniform
from nobound.training.method import (
    BackpropMethod,
    available_methods,
    create_method,
    register_method,
)
from nobound.training.progress import JsonLinesLogger, ProgressBar
from nobound.training.trainer import Trainer, TrainerConfig, latest_checkpoint

TIMING_KEYS = {"examples_per_second", "epoch_seconds"}


def problem(seed=0, n=40):
    """Class k has a bright band on rows 2k + 1, 2k + 2 of noisy 8 x 8 images."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    pixels = 0.5 * rng.random((n, 1, 8, 8))
    for k in range(3):
        pixels[labels == k, :, 2 * k + 1:2 * k + 3] += 0.5
    return pixels, labels


def make_trainer(run_dir, method="pgd", epochs=2, **config):
    model = kaiming_uniform(conv_net((1, 8, 8), 3, [(4, 3, 2, 1)], [8], batchnorm=True,
                                     dtype=np.float64), seed=1)
    loader = BatchLoader(problem(), 8, seed=3, dtype=np.float64,
                         augmentation=Augmentation(padding=1, flip=True))
    options = {"steps": 3} if method == "pgd" else {}
    settings = {"epochs": epochs, "seed": 5, "lr": 1e-2, "eps": 0.05, "grad_clip": 1.0,
                "lr_milestones": [1], "log_every": 2, **config}
    return Trainer(model, create_method(method, **options), loader, TrainerConfig(**settings),
                   run_dir=run_dir, quiet=True)


def final_state(trainer):
    state = {f"model/{k}": np.asarray(v) for k, v in trainer.model.state_dict().items()}
    state.update({f"optimizer/{k}": np.asarray(v)
                  for k, v in trainer.optimizer.state_dict().items()})
    return state


def log_without_timing(path):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS}
            for r in JsonLinesLogger(path).read()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight")
    trainer = make_trainer(run_dir)
    trainer.fit()
    return trainer, run_dir


@pytest.mark.parametrize("stop_at", [3, 5])  # mid-epoch, and exactly at the epoch end
def test_resume_is_bit_for_bit(tmp_path, stop_at, uninterrupted):
    reference, reference_dir = uninterrupted
    interrupted = make_trainer(tmp_path / "resumed")
    interrupted.fit(max_steps=stop_at)
    assert interrupted.step == stop_at
    checkpoint = latest_checkpoint(tmp_path / "resumed")
    resumed = make_trainer(tmp_path / "resumed")
    resumed.restore(checkpoint)
    assert resumed.step == stop_at
    resumed.fit()

    expected, actual = final_state(reference), final_state(resumed)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert np.array_equal(expected[key], actual[key]), key
    assert log_without_timing(reference_dir / "log.jsonl")[1:] == \
        [r for r in log_without_timing(tmp_path / "resumed" / "log.jsonl")
         if r["event"] != "resume"][1:]


def test_different_seeds_give_different_runs(tmp_path):
    first = make_trainer(tmp_path / "a", epochs=1)
    first.fit()
    second = make_trainer(tmp_path / "b", epochs=1, seed=6)
    second.fit()
    assert not np.array_equal(first.model.state_dict()["1.weight"],
                              second.model.state_dict()["1.weight"])


def test_gradient_clipping_bounds_the_sgd_step(tmp_path):
    trainer = make_trainer(None, method="standard", epochs=1, optimizer="sgd", momentum=0.0,
                           grad_clip=1e-3, lr=0.5)
    before = {k: p.data.copy() for k, p in trainer.model.named_parameters()}
    images, labels = trainer.loader.get_batch(0, 0)
    metrics = trainer.train_step(images, labels)
    change = np.sqrt(sum(((p.data - before[k]) ** 2).sum()
                         for k, p in trainer.model.named_parameters()))
    assert metrics["grad_norm"] > 1e-3  # the clip was active
    assert change == pytest.approx(0.5 * 1e-3, rel=1e-9)


def test_lr_milestones_and_log_lines(tmp_path):
    trainer = make_trainer(tmp_path, method="standard", epochs=2, lr_decay=0.1)
    trainer.fit()
    records = JsonLinesLogger(tmp_path / "log.jsonl").read()
    steps = [r for r in records if r["event"] == "step"]
    assert [r["step"] for r in steps] == [2, 4, 6, 8, 10]
    assert all(r["lr"] == pytest.approx(1e-2) for r in steps if r["step"] <= 5)
    assert all(r["lr"] == pytest.approx(1e-3) for r in steps if r["step"] > 6)
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1]
    for record in steps + epochs:
        assert {"loss", "accuracy", "lr", "eps"} <= {k.removeprefix("train_") for k in record}
        assert 0.0 <= record.get("accuracy", record.get("train_accuracy")) <= 1.0
    assert (tmp_path / "model.h5").is_file()


def test_standard_training_reduces_the_loss(tmp_path):
    trainer = make_trainer(None, method="standard", epochs=8, lr=3e-2, grad_clip=0.0,
                           lr_milestones=[])
    images, labels = trainer.loader.get_batch(0, 0)
    first = trainer.method.compute_step(trainer.model, images, labels,
                                        trainer.context()).metrics["loss"]
    record = trainer.fit()
    assert record["train_loss"] < 0.7 * first


def test_checkpoints_are_pruned_and_the_latest_found(tmp_path):
    trainer = make_trainer(tmp_path, method="standard", epochs=2, checkpoint_every=2,
                           keep_checkpoints=2)
    trainer.fit()
    names = sorted(p.name for p in tmp_path.glob("checkpoint-*.h5"))
    assert names == ["checkpoint-00000008.h5", "checkpoint-00000010.h5"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-00000010.h5"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_registry_and_custom_methods(tmp_path):
    assert {"standard", "pgd"} <= set(available_methods())
    with pytest.raises(ValueError, match="unknown training method 'nope'"):
        create_method("nope")

    @register_method
    class Frozen(BackpropMethod):
        name = "frozen-test"

        def compute_step(self, model, images, labels, context):
            from nobound.training.method import StepResult

            return StepResult(None, {"loss": float(context.step)})

    trainer = make_trainer(None, method="standard", epochs=1)
    trainer.method = create_method("frozen-test")
    before = trainer.model.state_dict()["1.weight"].copy()
    record = trainer.fit()
    assert np.array_equal(before, trainer.model.state_dict()["1.weight"])
    assert record["train_loss"] == pytest.approx(np.mean(range(5)))


def test_config_validation():
    with pytest.raises(ValueError, match="eps must be non-negative"):
        TrainerConfig(eps=-0.1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        TrainerConfig(optimizer="lbfgs")


def test_progress_bar_and_log_truncation(tmp_path):
    stream = io.StringIO()
    bar = ProgressBar(3, description="x", enabled=False, stream=stream)
    bar.update(1, loss=0.5)
    bar.close()
    assert stream.getvalue() == "" and bar.count == 1
    logger = JsonLinesLogger(tmp_path / "log.jsonl")
    for step in range(5):
        logger.log({"event": "step", "step": step, "loss": float("nan")})
    with open(tmp_path / "log.jsonl", "a") as handle:
        handle.write('{"event": "st')  # a line cut short by a crash
    logger.truncate_after(2)
    records = logger.read()
    assert [r["step"] for r in records] == [0, 1, 2] and records[0]["loss"] is None
    assert all(json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines())
