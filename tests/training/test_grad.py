"""GRAD and a short run of every certified method × relaxation through the trainer."""

from __future__ import annotations

import numpy as np
import pytest

from nobound.training.certified_loss import RELAXATIONS, certified_loss
from nobound.training.method import StepContext, create_method

METHOD_SETTINGS = {
    "grad": ({}, 0.02),
    "rgs": ({"population_size": 2, "sigma": 1e-2}, 0.02),
    "pgpe": ({"population_size": 16, "stdev_init": 1e-2}, 0.05),
}


@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize("method_name", sorted(METHOD_SETTINGS))
def test_a_short_run_decreases_the_certified_loss(tiny_training, method_name, relaxation):
    options, lr = METHOD_SETTINGS[method_name]
    model = tiny_training.model()
    before = tiny_training.loss(model, relaxation)
    method = create_method(method_name, relaxation=relaxation, **options,
                           bound_options=tiny_training.bound_options.get(relaxation, {}))
    trainer = tiny_training.trainer(model, method, lr=lr,
                                    grad_clip=0.0 if method_name == "pgpe" else 10.0)
    trainer.fit()
    assert trainer.step == 6
    after = tiny_training.loss(model, relaxation)
    assert after < before - 0.002, (before, after)


def test_grad_step_returns_the_gradient_of_the_certified_loss(tiny_training):
    model = tiny_training.model()
    x, y = tiny_training.images[:8], tiny_training.labels[:8]
    method = create_method("grad", relaxation="crown-ibp", robust_weight=0.5, l1=1e-3)
    context = StepContext(epoch=0, step=0, batch_index=0, steps_per_epoch=3, seed=0,
                          eps=0.03, lr=1e-3)
    result = method.compute_step(model, x, y, context)
    loss = certified_loss(model, x, y, 0.03, "crown-ibp", robust_weight=0.5, l1_weight=1e-3)
    loss.loss.backward()
    for name, p in model.named_parameters():
        np.testing.assert_allclose(result.gradients[name], p.grad, rtol=1e-12, atol=1e-15)
    assert result.metrics["loss"] == pytest.approx(float(loss.loss.data), rel=1e-12)
    assert 0.0 <= result.metrics["certified_accuracy"] <= result.metrics["accuracy"] + 1e-12


def test_methods_rebuild_from_their_options():
    for name, (options, _) in METHOD_SETTINGS.items():
        method = create_method(name, relaxation="deeppoly", **options)
        again = create_method(name, **method.options())
        assert again.options() == method.options()
    with pytest.raises(ValueError):
        create_method("grad", relaxation="octagon")
