"""PGPE and RGS on the local Ray cluster (2 CPUs, conftest.py) equal the single-process
run: PGPE bit for bit, RGS to the round-off of its changed summation order; a dead worker's
task is retried; a run resumes from a checkpoint with or without Ray."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from nobound.data import BatchLoader  # noqa: E402
from nobound.distributed import on_ray  # noqa: E402
from nobound.distributed.population import RayPopulation, pgpe_chunk  # noqa: E402
from nobound.nn import conv_net, kaiming_uniform  # noqa: E402
from nobound.training.method import PopulationBatch, StepContext, create_method  # noqa: E402
from nobound.training.trainer import Trainer, TrainerConfig  # noqa: E402

TRAFFIC = ("ray_sent_bytes", "ray_returned_bytes")


@pytest.fixture(scope="module", autouse=True)
def test_functions_travel_by_value():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # for crash_once


def model():
    return kaiming_uniform(conv_net((1, 8, 8), 3, [(4, 3, 2, 1)], [8], dtype=np.float64), 1)


def trainer(method, run_dir, data, epochs=1):
    loader = BatchLoader(data, 8, seed=3, dtype=np.float64)
    config = TrainerConfig(epochs=epochs, seed=5, lr=1e-2, eps=0.05, log_every=1)
    return Trainer(model(), method, loader, config, run_dir=run_dir, quiet=True)


def pgpe(**options):
    return create_method("pgpe", relaxation="deeppoly", population_size=8, chunk_size=2,
                         workers=1, **options)


def same_state(first, second):
    for name, value in first.model.state_dict().items():
        np.testing.assert_array_equal(second.model.state_dict()[name], value, err_msg=name)
    for name, value in first.method.state_dict().items():
        np.testing.assert_array_equal(second.method.state_dict()[name], value, err_msg=name)


def test_pgpe_on_ray_equals_one_process_bit_for_bit(tmp_path, striped_problem):
    local = trainer(pgpe(), tmp_path / "local", striped_problem())
    local.fit(max_steps=2)
    distributed = trainer(on_ray(pgpe()), tmp_path / "ray", striped_problem())
    distributed.fit(max_steps=2)
    same_state(local, distributed)
    records = [r for r in distributed.logger.read() if r["event"] == "step"]
    assert records and all(r["ray_sent_bytes"] > 0 for r in records)
    # only the losses come back: 8 members × 8 bytes, plus the chunks' metrics
    assert all(r["ray_returned_bytes"] < r["ray_sent_bytes"] for r in records)


@pytest.mark.parametrize("population, bitwise", [(2, True), (4, False)])
def test_rgs_on_ray_sums_the_same_gradients(population, bitwise, striped_problem):
    images, labels = striped_problem(8)
    context = StepContext(epoch=0, step=3, batch_index=3, steps_per_epoch=4, seed=5,
                          eps=0.05, lr=1e-2)
    steps = []
    for method in (create_method("rgs", relaxation="deeppoly", population_size=population,
                                 sigma=0.05, workers=2),
                   on_ray(create_method("rgs", relaxation="deeppoly",
                                        population_size=population, sigma=0.05))):
        steps.append(method.compute_step(model(), images, labels, context))
    local, distributed = steps
    for name, gradient in local.gradients.items():
        if bitwise:  # one member per worker: the same two numbers added once
            np.testing.assert_array_equal(distributed.gradients[name], gradient)
        else:  # (g0 + g1) + (g2 + g3) instead of ((g0 + g1) + g2) + g3: a few ulps
            scale = np.abs(gradient).max()
            np.testing.assert_allclose(distributed.gradients[name], gradient, rtol=0,
                                       atol=1e-13 * max(scale, 1e-300))
    assert {k: v for k, v in distributed.metrics.items() if k not in TRAFFIC} == \
        pytest.approx(local.metrics, rel=1e-12)


def crash_once(model, payload, start, stop):
    """pgpe_chunk, but the first call (marked by a file) kills its worker process."""
    marker = os.environ["NOBOUND_TEST_CRASH_MARKER"]
    if start == 0 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return pgpe_chunk(model, payload, start, stop)


def test_a_dead_workers_task_is_retried(tmp_path, monkeypatch, striped_problem):
    method = pgpe()
    net = model()
    images, labels = striped_problem(8)
    context = StepContext(epoch=0, step=0, batch_index=0, steps_per_epoch=2, seed=5,
                          eps=0.05, lr=1e-2)
    method._setup(net)
    population = RayPopulation()
    payload = population.payload(method, PopulationBatch(net, images, labels, context),
                                 np.asarray(method.sigma))
    chunks = [(0, 2), (2, 4), (4, 6), (6, 8)]
    expected = population.run(pgpe_chunk, net, payload, chunks)
    marker = tmp_path / "crashed"
    # the marker's path reaches the workers through their environment
    remote = ray.remote(num_cpus=1, max_retries=3, runtime_env={
        "env_vars": {"NOBOUND_TEST_CRASH_MARKER": str(marker)}})(crash_once)
    shared, architecture = ray.put(payload), population.model_ref(net)
    results = ray.get([remote.remote(architecture, shared, *c) for c in chunks])
    assert marker.exists()  # a worker did die
    for (losses, metrics), (want, want_metrics) in zip(results, expected, strict=True):
        np.testing.assert_array_equal(losses, want)
        assert metrics == want_metrics


def test_a_ray_run_resumes_with_or_without_ray(tmp_path, striped_problem):
    data = striped_problem()
    straight = trainer(on_ray(pgpe()), tmp_path / "straight", data)
    straight.fit(max_steps=2)
    first = trainer(on_ray(pgpe()), tmp_path / "first", data)
    first.fit(max_steps=1)
    checkpoint = first.save_checkpoint()
    resumed = trainer(pgpe(), tmp_path / "resumed", data)  # no Ray this time
    resumed.restore(checkpoint)
    resumed.fit(max_steps=2)
    same_state(straight, resumed)


def test_only_pgpe_and_rgs_go_to_ray():
    with pytest.raises(ValueError, match="only PGPE and RGS"):
        on_ray(create_method("grad"))


def test_train_command_with_ray_trains_the_same_network(tmp_path, capsys):
    from nobound.cli import main
    from nobound.io.checkpoint import load_checkpoint

    flags = ["train", "--arch", "cnn3_tiny", "--method", "pgpe", "--relaxation", "ibp",
             "--population-size", "4", "--eps", "0.02", "--dataset", "fashion-mnist-embedded",
             "--limit", "20", "--epochs", "1", "--batch-size", "10", "--eval-limit", "10",
             "--quiet"]
    assert main([*flags, "--out", str(tmp_path / "local")]) == 0
    assert main([*flags, "--ray", "--out", str(tmp_path / "ray")]) == 0
    local, distributed = (load_checkpoint(tmp_path / run / "model.h5") for run in
                          ("local", "ray"))
    for name, value in local.model.state_dict().items():
        np.testing.assert_array_equal(distributed.model.state_dict()[name], value)
    capsys.readouterr()
    assert main(["train", "--arch", "cnn3_tiny", "--method", "grad", "--ray",
                 "--dataset", "fashion-mnist-embedded", "--out", str(tmp_path / "g")]) == 2
    assert "only PGPE and RGS" in capsys.readouterr().err


class PlanSpy:
    """A certified objective that records the bound plan each call receives."""

    def __init__(self, real):
        self.real, self.plans = real, []
        self.robust_weight = real.robust_weight

    def __call__(self, *args, plan=None, **kwargs):
        self.plans.append(plan)
        return self.real(*args, plan=plan, **kwargs)


def test_the_runs_bound_plan_travels_to_the_workers(striped_problem):
    from dataclasses import replace

    from nobound.bounds.plan import BoundsPlan
    from nobound.training.execution_plan import ExecutionPlan

    method = pgpe()
    net = model()
    images, labels = striped_problem(8)
    bounds = BoundsPlan(memory_budget_bytes=1, patches="never")
    context = StepContext(epoch=0, step=0, batch_index=0, steps_per_epoch=2, seed=5,
                          eps=0.05, lr=1e-2, plan=ExecutionPlan(bounds=bounds))
    method._setup(net)
    payload = RayPopulation().payload(method, PopulationBatch(net, images, labels, context),
                                      np.asarray(method.sigma))
    assert payload.bounds_plan is bounds
    spy = PlanSpy(payload.objective)
    pgpe_chunk(net, replace(payload, objective=spy), 0, 2)
    assert spy.plans == [bounds]
