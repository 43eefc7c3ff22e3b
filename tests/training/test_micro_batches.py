"""Gradient accumulation over micro-batches: the same step in less memory."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.data import BatchLoader
from nobound.nn import conv_net, kaiming_uniform
from nobound.training.execution_plan import ExecutionPlan, micro_batch_slices
from nobound.training.method import StepContext, create_method
from nobound.training.micro_batches import accumulate_micro_batches
from nobound.training.population import measure_peak_bytes
from nobound.training.trainer import Trainer, TrainerConfig


def small_conv_net(batchnorm: bool = False):
    return kaiming_uniform(conv_net((1, 8, 8), 3, [(4, 3, 2, 1), (4, 3, 1, 1)], [8],
                                    batchnorm=batchnorm, dtype=np.float64), seed=2)


def batch(count: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((count, 1, 8, 8)), rng.integers(0, 3, size=count)


def context(eps: float = 0.05) -> StepContext:
    return StepContext(epoch=0, step=3, batch_index=3, steps_per_epoch=10, seed=7, eps=eps,
                       lr=1e-3)


@pytest.mark.parametrize("count, size, expected", [
    (10, 4, [(0, 4), (4, 8), (8, 10)]), (8, 8, [(0, 8)]), (3, 5, [(0, 3)]),
    (5, 1, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)])])
def test_slices_cover_the_batch_once_in_order(count, size, expected):
    assert [(s.start, s.stop) for s in micro_batch_slices(count, size)] == expected


def test_a_micro_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        micro_batch_slices(4, 0)


@pytest.mark.parametrize("method, options", [
    ("grad", {"relaxation": "deeppoly"}), ("grad", {"relaxation": "crown-ibp",
                                                    "robust_weight": 0.5, "l1": 1e-3}),
    ("rgs", {"relaxation": "deeppoly", "population_size": 2, "sigma": 1e-2}),
    ("standard", {})])
def test_accumulated_step_equals_the_whole_batch_step(method, options):
    # uneven micro-batches (5, 5, 2) so a wrong weighting (1/K instead of |M_k|/B) shows
    model, (images, labels) = small_conv_net(), batch(12)
    training = create_method(method, **options)
    whole = training.compute_step(model, images, labels, context())
    split = accumulate_micro_batches(training, model, images, labels, context(), 5)
    assert set(split.gradients) == set(whole.gradients)
    for name, gradient in whole.gradients.items():
        assert np.abs(gradient).max() > 0, name
        np.testing.assert_allclose(split.gradients[name], gradient, rtol=1e-10, atol=1e-13,
                                   err_msg=name)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(split.metrics[key], whole.metrics[key], rtol=1e-10)


def test_rgs_micro_batches_share_the_steps_parameter_noise():
    # with the noise drawn per micro-batch the sum would average other networks: changing
    # the step counter (new noise) must change the gradient, splitting must not
    model, (images, labels) = small_conv_net(), batch(8, seed=1)
    rgs = create_method("rgs", relaxation="ibp", population_size=2, sigma=0.05)
    whole = rgs.compute_step(model, images, labels, context()).gradients
    split = accumulate_micro_batches(rgs, model, images, labels, context(), 3).gradients
    other_step = StepContext(0, 4, 4, 10, 7, 0.05, 1e-3)
    other = rgs.compute_step(model, images, labels, other_step).gradients
    for name in whole:
        np.testing.assert_allclose(split[name], whole[name], rtol=1e-10, atol=1e-13)
    assert any(not np.allclose(other[name], whole[name]) for name in whole)


def test_batchnorm_micro_batches_use_their_own_statistics():
    # documented semantics: each micro-batch is a batch for BatchNorm in training mode,
    # so the accumulated gradient is the weighted sum of the micro-batches' own gradients
    model, (images, labels) = small_conv_net(batchnorm=True), batch(12, seed=2)
    model.train()
    training = create_method("grad", relaxation="ibp")
    split = accumulate_micro_batches(training, model, images, labels, context(),
                                     6).gradients
    halves = [training.compute_step(model, images[part], labels[part], context()).gradients
              for part in (slice(0, 6), slice(6, 12))]
    whole = training.compute_step(model, images, labels, context()).gradients
    for name in split:
        np.testing.assert_allclose(split[name], 0.5 * (halves[0][name] + halves[1][name]),
                                   rtol=1e-12, atol=1e-15)
    assert any(not np.allclose(split[name], whole[name]) for name in split)


def test_micro_batches_lower_the_peak_memory_of_a_deeppoly_step():
    model, (images, labels) = small_conv_net(), batch(32, seed=3)
    training = create_method("grad", relaxation="deeppoly")
    whole = measure_peak_bytes(lambda: training.compute_step(model, images, labels, context()))
    split = measure_peak_bytes(lambda: accumulate_micro_batches(
        training, model, images, labels, context(), 4))
    # the graph of DeepPoly's back-substitution grows with the batch: 8× smaller
    # micro-batches must need well under half the memory
    assert split < 0.5 * whole, (split, whole)


def trainer_run(micro_batch: int, method: str = "grad", workers: int | None = 1,
                **options) -> Trainer:
    images, labels = batch(24, seed=4)
    loader = BatchLoader((images, labels), 12, seed=1, dtype=np.float64)
    trainer = Trainer(small_conv_net(), create_method(method, **options), loader,
                      TrainerConfig(epochs=1, seed=3, lr=1e-2, eps=0.05, grad_clip=1.0,
                                    micro_batch=micro_batch, micro_batch_workers=workers),
                      quiet=True)
    trainer.fit()
    return trainer


def test_training_with_micro_batches_follows_the_same_trajectory():
    whole = trainer_run(0, relaxation="deeppoly").model.state_dict()
    split = trainer_run(5, relaxation="deeppoly").model.state_dict()
    start = small_conv_net().state_dict()
    for name in whole:
        assert not np.allclose(whole[name], start[name]), name  # it did train
        np.testing.assert_allclose(split[name], whole[name], rtol=1e-9, atol=1e-12)


def test_pgpe_refuses_micro_batches():
    with pytest.raises(ValueError, match="cannot be split into micro-batches"):
        trainer_run(4, method="pgpe", relaxation="ibp", population_size=4)


@pytest.mark.parametrize("value", [-1])
def test_a_negative_micro_batch_is_refused(value):
    with pytest.raises(ValueError, match="micro-batch"):
        TrainerConfig(micro_batch=value)


@pytest.mark.parametrize("method, options", [
    ("grad", {"relaxation": "deeppoly"}), ("grad", {"relaxation": "ibp"}),
    ("standard", {}), ("pgd", {"steps": 3, "restarts": 1})])
def test_micro_batches_on_threads_give_the_serial_step_bit_for_bit(method, options):
    # each micro-batch is computed exactly as in the serial loop and summed in order
    model, (images, labels) = small_conv_net(), batch(12)
    training = create_method(method, **options)
    serial = accumulate_micro_batches(training, model, images, labels, context(), 3)
    threaded = accumulate_micro_batches(training, model, images, labels, context(), 3,
                                        workers=3)
    for name, gradient in serial.gradients.items():
        assert np.abs(gradient).max() > 0, name
        np.testing.assert_array_equal(threaded.gradients[name], gradient, err_msg=name)
    assert threaded.metrics == serial.metrics
    assert all(p.grad is None for p in model.parameters())  # the model's own leaves unused


def test_micro_batch_workers_only_where_the_step_keeps_no_outside_state():
    def micro_batch_workers(method, model, requested):  # as the trainer asks its plan
        return ExecutionPlan(micro_batch_workers=requested).micro_batch_threads(
            model, parallel=method.parallel_micro_batches)

    grad = create_method("grad", relaxation="ibp")
    assert micro_batch_workers(grad, small_conv_net(), 2) == 2
    assert micro_batch_workers(grad, small_conv_net(batchnorm=True), 2) == 1
    evaluating = small_conv_net(batchnorm=True)
    evaluating.eval()
    assert micro_batch_workers(grad, evaluating, 2) == 2
    rgs = create_method("rgs", relaxation="ibp", population_size=2)
    assert micro_batch_workers(rgs, small_conv_net(), 2) == 1  # RGS threads its members


def test_training_with_micro_batches_on_threads_follows_the_serial_trajectory():
    serial = trainer_run(5, relaxation="ibp").model.state_dict()
    threaded = trainer_run(5, relaxation="ibp", workers=2).model.state_dict()
    for name in serial:
        np.testing.assert_array_equal(threaded[name], serial[name], err_msg=name)


def test_zero_micro_batch_workers_are_refused():
    with pytest.raises(ValueError, match="micro-batch workers"):
        TrainerConfig(micro_batch=4, micro_batch_workers=0)
