"""The run's one execution plan: decided by TrainerConfig.execution_plan, handed down by the
trainer to every step, and read there by the micro-batches, RGS, PGPE and the certified
loss (whose bound gets the plan's BoundsPlan). Execution choices never change the numbers:
a default run trains bit for bit as the code before the plan did (stored weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import nobound.bounds
from nobound.bounds.plan import DEFAULT_MEMORY_BUDGET, BoundsPlan
from nobound.data.loader import BatchLoader
from nobound.training.certified_loss import CertifiedObjective, certified_loss
from nobound.training.execution_plan import DEFAULT_PLAN, ExecutionPlan
from nobound.training.method import StepContext, create_method
from nobound.training.trainer import Trainer, TrainerConfig

REFERENCE = Path(__file__).parent / "data" / "execution_plan_reference_runs.json"
#: the four stored runs: method, its options, the execution settings of the run
REFERENCE_RUNS = {
    "grad-deeppoly": ("grad", {"relaxation": "deeppoly"}, {}),
    "grad-deeppoly-mb5": ("grad", {"relaxation": "deeppoly"},
                          {"micro_batch": 5, "micro_batch_workers": 1}),
    "rgs-deeppoly": ("rgs", {"relaxation": "deeppoly", "population_size": 3, "sigma": 1e-2},
                     {"population_workers": 1}),
    "pgpe-deeppoly": ("pgpe", {"relaxation": "deeppoly", "population_size": 8,
                               "stdev_init": 1e-2}, {"population_chunk": 4}),
}
CERTIFIED_METHODS = {"grad": {"relaxation": "deeppoly"},
                     "rgs": {"relaxation": "deeppoly", "population_size": 3, "sigma": 1e-2},
                     "pgpe": {"relaxation": "deeppoly", "population_size": 4,
                              "stdev_init": 1e-2}}


def tiny_trainer(tiny_training, method, epochs: int = 2, **execution) -> Trainer:
    loader = BatchLoader((tiny_training.images, tiny_training.labels), 16, seed=0,
                         dtype=np.float64)
    config = TrainerConfig(epochs=epochs, lr=0.01, eps=0.02, grad_clip=10.0, log_every=1,
                           **execution)
    return Trainer(tiny_training.model(), method, loader, config, quiet=True)


@pytest.fixture
def bound_calls(monkeypatch):
    """The ``plan`` of every compute_bounds call (certified_loss looks it up in
    nobound.bounds when it runs)."""
    calls = []
    original = nobound.bounds.compute_bounds

    def spy(*args, **kwargs):
        calls.append(kwargs.get("plan"))
        return original(*args, **kwargs)

    monkeypatch.setattr(nobound.bounds, "compute_bounds", spy)
    return calls


def test_the_config_decides_every_field_of_the_plan():
    config = TrainerConfig(micro_batch=4, micro_batch_workers=2, population_workers=3,
                           population_chunk=6, population_memory=2.0, bound_memory=0.5,
                           bound_patches="never")
    assert config.execution_plan() == ExecutionPlan(
        micro_batch=4, micro_batch_workers=2, member_workers=3, member_chunk=6,
        member_budget_bytes=2e6, bounds=BoundsPlan(memory_budget_bytes=500_000,
                                                   patches="never"))
    # the defaults are compute_bounds' and the population's own defaults
    assert TrainerConfig().execution_plan() == DEFAULT_PLAN
    assert DEFAULT_PLAN.bounds == BoundsPlan(DEFAULT_MEMORY_BUDGET)
    assert TrainerConfig(bound_memory=1e-9).execution_plan().bounds.memory_budget_bytes == 1


@pytest.mark.parametrize("settings, message", [
    ({"population_workers": 0}, "member workers"), ({"population_chunk": 0}, "member chunk"),
    ({"population_memory": -1.0}, "member budget"), ({"bound_memory": 0.0}, "bound memory"),
    ({"bound_patches": "sometimes"}, "patches"), ({"micro_batch_workers": 0}, "micro-batch")])
def test_a_config_with_an_impossible_plan_is_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainerConfig(**settings)


@pytest.mark.parametrize("name", CERTIFIED_METHODS)
def test_the_runs_bound_plan_reaches_compute_bounds(tiny_training, bound_calls, name):
    trainer = tiny_trainer(tiny_training, create_method(name, **CERTIFIED_METHODS[name]),
                           bound_memory=3.0, bound_patches="never")
    trainer.train_step(tiny_training.images[:16], tiny_training.labels[:16])
    assert trainer.plan.bounds == BoundsPlan(memory_budget_bytes=3_000_000, patches="never")
    assert bound_calls and all(plan is trainer.plan.bounds for plan in bound_calls)


@pytest.mark.parametrize("name", ["rgs", "pgpe"])
def test_population_methods_use_the_trainers_plan_object(tiny_training, monkeypatch, name):
    asked = []
    original = ExecutionPlan.member_threads

    def member_threads(self, *args, **kwargs):
        asked.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ExecutionPlan, "member_threads", member_threads)
    method = create_method(name, **CERTIFIED_METHODS[name])
    trainer = tiny_trainer(tiny_training, method, population_workers=1)
    trainer.train_step(tiny_training.images[:16], tiny_training.labels[:16])
    assert asked and all(plan is trainer.plan for plan in asked)
    assert not hasattr(method, "plan")  # the method holds no plan of its own


def test_a_methods_own_execution_options_refine_the_handed_down_plan():
    """Options given to a method in code (benchmarks, older checkpoints) override the
    population fields of the run's plan and keep the rest, the bound's plan included."""
    run = ExecutionPlan(member_workers=3, bounds=BoundsPlan(patches="never"))
    rgs = create_method("rgs", relaxation="ibp", population_size=2, workers=1)
    model = tiny_model()
    assert rgs.workers_for(model, np.zeros(1), run) == 1
    assert create_method("rgs", relaxation="ibp", population_size=4).workers_for(
        model, np.zeros(1), run) == 3
    pgpe = create_method("pgpe", relaxation="ibp", population_size=4, chunk_size=2,
                         memory_budget_mb=1.0)
    refined = pgpe.config.execution_plan(run)
    assert (refined.member_workers, refined.member_chunk, refined.member_budget_bytes) == \
        (3, 2, 1e6)
    assert refined.bounds is run.bounds
    assert create_method("pgpe", relaxation="ibp").config.execution_plan(run) is run


def test_pgpe_refuses_an_odd_population_chunk_from_the_plan(tiny_training):
    with pytest.raises(ValueError, match="even"):
        tiny_trainer(tiny_training, create_method("pgpe", relaxation="ibp",
                                                  population_size=4), population_chunk=3)


def test_execution_options_in_the_bound_options_are_refused():
    with pytest.raises(ValueError, match="execution choices"):
        CertifiedObjective("deeppoly", bound_options=(("memory_budget_bytes", 10),))
    with pytest.raises(ValueError, match="conflict with the plan"):
        certified_loss(tiny_model(), np.zeros((1, 1, 8, 8)), np.zeros(1, dtype=int), 0.1,
                       "ibp", bound_options={"memory_budget_bytes": 10}, plan=BoundsPlan())


@pytest.mark.parametrize("relaxation", ["deeppoly", "crown-ibp"])
def test_a_one_byte_bound_budget_cuts_every_row_and_keeps_the_loss(tiny_training,
                                                                  monkeypatch, relaxation):
    """The plan's budget is the one the bound uses: a budget of one byte leaves room for
    one back-substitution row per chunk, and the loss and its gradient are unchanged."""
    model = tiny_training.model()
    x, y = tiny_training.images[:12], tiny_training.labels[:12]
    rows = []
    original = BoundsPlan.rows_per_chunk

    def rows_per_chunk(self, *args, **kwargs):
        rows.append(original(self, *args, **kwargs))
        return rows[-1]

    monkeypatch.setattr(BoundsPlan, "rows_per_chunk", rows_per_chunk)

    def loss_and_gradient(plan):
        params = {n: p.detach() for n, p in model.named_parameters()}
        for p in params.values():
            p.requires_grad = True
        loss = certified_loss(model, x, y, 0.03, relaxation, params=params, plan=plan).loss
        loss.backward()
        return float(loss.data), {n: p.grad for n, p in params.items()}

    rows.clear()
    whole_loss, whole_gradient = loss_and_gradient(BoundsPlan())
    assert rows and min(rows) > 1
    rows.clear()
    cut_loss, cut_gradient = loss_and_gradient(BoundsPlan(memory_budget_bytes=1))
    assert rows and set(rows) == {1}
    assert cut_loss == pytest.approx(whole_loss, rel=1e-12, abs=0)
    for name, gradient in whole_gradient.items():
        np.testing.assert_allclose(cut_gradient[name], gradient, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("run", REFERENCE_RUNS)
def test_the_plan_trains_as_the_code_before_it(tiny_training, run):
    """Weights after two epochs equal those stored from the code before the run-wide
    plan (the same runs there had identical bits; a tolerance of 1e-12 only allows for
    another CPU's BLAS rounding, while a changed step moves them by far more)."""
    name, options, execution = REFERENCE_RUNS[run]
    trainer = tiny_trainer(tiny_training, create_method(name, **options), **execution)
    trainer.fit()
    stored = json.loads(REFERENCE.read_text())["runs"][run]
    weights = trainer.model.state_dict()
    assert sorted(weights) == sorted(stored)
    for key, expected in stored.items():
        reference = np.asarray(expected["values"]).reshape(expected["shape"])
        np.testing.assert_allclose(weights[key], reference, rtol=1e-12, atol=0, err_msg=key)


def test_execution_options_in_the_plan_train_as_the_same_options_on_the_method(tiny_training):
    """The plan's population chunk and workers, or the same given to PGPE in code: the
    same run bit for bit."""
    options = CERTIFIED_METHODS["pgpe"]
    by_plan = tiny_trainer(tiny_training, create_method("pgpe", **options), epochs=1,
                           population_chunk=2, population_workers=2)
    by_method = tiny_trainer(tiny_training, create_method("pgpe", chunk_size=2, workers=2,
                                                          **options), epochs=1)
    for trainer in (by_plan, by_method):
        trainer.fit()
    for key, value in by_plan.model.state_dict().items():
        np.testing.assert_array_equal(by_method.model.state_dict()[key], value, err_msg=key)


def test_a_step_outside_a_trainer_runs_on_the_default_plan():
    context = StepContext(epoch=0, step=0, batch_index=0, steps_per_epoch=1, seed=0,
                          eps=0.0, lr=0.1)
    assert context.plan is DEFAULT_PLAN


def tiny_model():
    from nobound.nn.zoo import build_model

    return build_model("cnn3_tiny", (1, 8, 8), 3, dtype=np.float64)
