"""Population chunks evaluated by worker threads: the same losses as the serial loop.

* with the same chunks, any number of workers gives bit-identical losses (np.array_equal);
* without a chunk size, workers split the population into one chunk each;
* the memory budget is shared by the workers; the default worker count respects BLAS;
* the grad mode is per thread, so a worker's enable_grad / no_grad never leaks.
"""

from __future__ import annotations

import threading
import types

import numpy as np
import pytest

from nobound.autodiff import Tensor, enable_grad, is_grad_enabled, no_grad
from nobound.nn.init import kaiming_uniform
from nobound.nn.zoo import build_model
from nobound.training import execution_plan
from nobound.training.execution_plan import (
    default_workers,
    member_chunking,
    population_chunks,
)
from nobound.training.losses import cross_entropy
from nobound.training.perturbation import ParameterLayout, standard_normal_directions
from nobound.training.population import evaluate_population


@pytest.fixture(scope="module")
def problem():
    """cnn3_tiny on 12×12 inputs (float32, the Numba passes' dtype), 9 perturbed members."""
    model = kaiming_uniform(build_model("cnn3_tiny", (1, 12, 12), 4), 0)
    params = dict(model.named_parameters())
    layout = ParameterLayout.of(params)
    center = layout.flatten(params)
    vectors = center[None] + 0.05 * standard_normal_directions(
        1, 0, 0, range(9), layout.size, "test", dtype=center.dtype)
    rng = np.random.default_rng(2)
    x = Tensor(rng.uniform(size=(40, 1, 12, 12)).astype(np.float32))
    targets = rng.integers(0, 4, size=40)

    def loss_of(member_params):
        return cross_entropy(model(x, member_params), targets)

    return loss_of, layout, lambda start, stop: vectors[start:stop]


@pytest.mark.parametrize("chunk_size", [1, 2, 4])
@pytest.mark.parametrize("workers", [2, 3])
def test_workers_give_exactly_the_serial_losses(problem, chunk_size, workers):
    loss_of, layout, members = problem
    serial = evaluate_population(loss_of, layout, members, 9, chunk_size)
    threaded = evaluate_population(loss_of, layout, members, 9, chunk_size, workers)
    assert threaded.shape == (9,) and np.ptp(serial) > 0
    np.testing.assert_array_equal(threaded, serial)


def test_workers_without_a_chunk_size_take_one_chunk_each(problem):
    loss_of, layout, members = problem
    assert population_chunks(9, None, 2) == [(0, 5), (5, 9)]
    assert population_chunks(9, None, 1) == [(0, 9)]
    assert population_chunks(9, 4, 2) == [(0, 4), (4, 8), (8, 9)]
    threaded = evaluate_population(loss_of, layout, members, 9, workers=2)
    np.testing.assert_array_equal(threaded, evaluate_population(loss_of, layout, members, 9, 5))


def test_a_failing_chunk_raises_in_the_caller(problem):
    _, layout, members = problem

    def loss_of(params):
        raise RuntimeError("member evaluation failed")

    with pytest.raises(RuntimeError, match="member evaluation failed"):
        evaluate_population(loss_of, layout, members, 9, 3, workers=2)


def test_budget_is_shared_by_the_workers():
    def chunk(*args, **kwargs):
        return member_chunking(*args, **kwargs)[0]

    assert chunk(100.0, 2100.0, 256, workers=1) == 21
    assert chunk(100.0, 2100.0, 256, workers=2) == 10
    assert chunk(100.0, 2100.0, 256, multiple=4, workers=2) == 8
    # a budget larger than the population still leaves one chunk per worker
    assert chunk(1.0, 1e9, 256, workers=2) == 128
    assert chunk(1.0, 1e9, 9, multiple=2, workers=2) == 6
    assert chunk(1.0, 1e9, 256, workers=1) == 256


def test_one_worker_when_the_smallest_chunk_exceeds_the_budget():
    def workers(bytes_per_member, budget, requested, multiple=1):
        return member_chunking(bytes_per_member, budget, 256, requested, multiple)[1]

    assert workers(100.0, 2100.0, 2) == 2
    assert workers(100.0, 150.0, 2) == 2               # one member fits
    assert workers(100.0, 90.0, 2) == 1                # one member does not
    assert workers(100.0, 150.0, 2, multiple=2) == 1   # a pair does not
    assert workers(100.0, 250.0, 4, multiple=2) == 4
    assert workers(0.0, 1.0, 3) == 3                   # nothing measured


def test_chunking_combines_the_workers_and_their_share_of_the_budget():
    assert member_chunking(100.0, 2100.0, 256, workers=2) == (10, 2)
    assert member_chunking(100.0, 150.0, 256, workers=2, multiple=2) == (2, 1)


def test_pgpe_uses_one_worker_when_a_pair_exceeds_its_budget(tiny_training):
    from nobound.training.method import create_method

    model = tiny_training.model()
    method = create_method("pgpe", relaxation="deeppoly", population_size=8,
                           memory_budget_mb=1e-6, workers=2)  # a 1-byte budget
    trainer = tiny_training.trainer(model, method, lr=0.05, grad_clip=0.0, epochs=1)
    trainer.fit()
    assert set(method._chunking_by_batch.values()) == {(2, 1)}  # one pair, one worker


def test_default_workers_leave_no_core_oversubscribed(monkeypatch):
    monkeypatch.setattr(execution_plan.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3},
                        raising=False)
    for name in execution_plan.BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert default_workers() == 1  # BLAS uses every core by default
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert default_workers() == 2
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # takes precedence over OMP
    assert default_workers() == 4
    assert default_workers(types.ModuleType("cupy")) == 1


def test_grad_mode_is_per_thread():
    seen = {}
    inside_no_grad, release = threading.Event(), threading.Event()

    def worker():
        with no_grad():
            inside_no_grad.set()
            release.wait(5)
            with enable_grad():
                seen["worker enable_grad"] = is_grad_enabled()
            seen["worker no_grad"] = is_grad_enabled()

    thread = threading.Thread(target=worker)
    thread.start()
    inside_no_grad.wait(5)
    seen["main while worker in no_grad"] = is_grad_enabled()
    with no_grad():
        release.set()
        thread.join(5)
        seen["main no_grad after worker"] = is_grad_enabled()
    assert seen == {"main while worker in no_grad": True, "worker enable_grad": True,
                    "worker no_grad": False, "main no_grad after worker": False}
    assert is_grad_enabled()


def test_pgpe_with_workers_trains_exactly_as_with_one(tiny_training):
    """Same chunks, two workers: the same losses, hence the same θ and σ."""
    from nobound.training.method import create_method

    def run(workers):
        model = tiny_training.model()
        method = create_method("pgpe", relaxation="deeppoly", population_size=8,
                               stdev_init=1e-2, chunk_size=2, workers=workers)
        tiny_training.trainer(model, method, lr=0.05, grad_clip=0.0, epochs=1).fit()
        return model, method

    runs = [run(workers) for workers in (1, 2)]
    (serial_model, serial), (threaded_model, threaded) = runs
    for (name, a), (_, b) in zip(serial_model.named_parameters(),
                                 threaded_model.named_parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    np.testing.assert_array_equal(serial.sigma, threaded.sigma)
    assert not np.all(serial.sigma == 1e-2)  # the runs did train


def test_pgpe_rejects_a_worker_count_below_one():
    from nobound.training.pgpe import PGPEConfig

    with pytest.raises(ValueError, match="workers"):
        PGPEConfig(workers=0)
