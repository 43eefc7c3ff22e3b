"""Certify many test samples at once: the cheap stages batched, the search per sample.

:meth:`Certifier.certify_sample` runs the stages of :mod:`nobound.certify.pipeline` for one
(x, label). On a test set its stage 2 dominates: the paper's evaluation attack (200 PGD
steps × 5 restarts) on one image at a time is thousands of tiny forward/backward passes.
:func:`certify_batch` runs stages 1–2 for a whole chunk of samples in one batched attack
and hands only the samples they leave open to :meth:`Certifier.verify` (bounds, branch and
bound, the rigorous check), one at a time with its own deadline.

Every verdict is still decided the way ``certify_sample`` decides it:

* a counterexample counts only through ``VerificationProblem.find_counterexample`` — clipped
  into the sample's box and replayed in the model's own arithmetic;
* a proof counts only through ``Certifier.verify``, i.e. after the rigorous checker.

Only the attack's points differ from a per-sample run (the restarts' random starts are drawn
for the batch), so a batched and a per-sample run may falsify different samples near the
boundary; both are valid attacks. A sample's ``seconds`` is its share of the batched stages
plus its own search time.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from nobound.backend import to_numpy
from nobound.certify.pipeline import Certifier
from nobound.certify.problem import VerificationProblem, robustness_problems
from nobound.certify.verdicts import FALSIFIED, Verdict


def _first_counterexample(problems: list[VerificationProblem], point: np.ndarray) -> Any:
    for problem in problems:
        found = problem.find_counterexample(point[None])
        if found is not None:
            return found
    return None


def _maybe_misclassified(certifier: Certifier, x: np.ndarray, labels: np.ndarray
                         ) -> list[int]:
    """The samples whose clean input may be a counterexample: one batched float64 forward
    pass, keeping every sample whose margin f_label − max_j f_j is ≤ a small slack (so
    that a batched product rounding differently from a single one cannot hide one). Each
    is then decided by ``find_counterexample``, as ``certify_sample`` decides it."""
    from nobound.autodiff.tensor import Tensor, no_grad

    with no_grad():
        outputs = np.asarray(to_numpy(certifier.model(Tensor(x)).data), np.float64)
    rows = np.arange(len(labels))
    others = outputs.copy()
    others[rows, labels] = -np.inf
    margin = outputs[rows, labels] - others.max(axis=1)
    slack = 1e-6 * (1.0 + np.abs(outputs).max(axis=1))
    return [int(i) for i in np.flatnonzero(~(margin > slack))]


def certify_batch(certifier: Certifier, images: Any, labels: Any, eps: float,
                  low: float | None = 0.0, high: float | None = 1.0) -> list[Verdict]:
    """One verdict per (image, label), as :meth:`Certifier.certify_sample` would give."""
    from nobound.attack import PGDConfig, pgd_attack

    started = time.perf_counter()
    labels = np.asarray(to_numpy(labels)).astype(int).reshape(-1)
    x = np.asarray(to_numpy(images), np.float64).reshape(len(labels), *certifier.input_shape)
    problems = [[replace(p, replay=certifier.replay)
                 for p in robustness_problems(certifier.model, x[i], int(labels[i]), eps,
                                              low, high)]
                for i in range(len(labels))]
    verdicts: list[Verdict | None] = [None] * len(labels)
    for i in _maybe_misclassified(certifier, x, labels):
        found = _first_counterexample(problems[i], x[i])
        if found is not None:
            verdicts[i] = Verdict(FALSIFIED, "natural", 0.0, found,
                                  details={"natural_correct": False,
                                           "adversarial_robust": False})
    open_ = [i for i, verdict in enumerate(verdicts) if verdict is None]
    ran_pgd = eps > 0 and low is not None and high is not None
    if ran_pgd and open_:
        config = certifier.config
        attack = PGDConfig(steps=config.robustness_attack_steps,
                           restarts=config.robustness_attack_restarts, loss="margin",
                           keep="first-adversarial")
        result = pgd_attack(certifier.model, x[open_], labels[open_], eps, attack,
                            low=low, high=high, seed=config.seed)
        candidates = np.asarray(to_numpy(result.adversarial), np.float64)
        for k, i in enumerate(open_):
            found = _first_counterexample(problems[i], candidates[k])
            if found is not None:
                verdicts[i] = Verdict(FALSIFIED, "pgd", 0.0, found,
                                      details={"natural_correct": True,
                                               "adversarial_robust": False})
    shared_seconds = (time.perf_counter() - started) / max(1, len(labels))
    for i, verdict in enumerate(verdicts):
        if verdict is not None:
            verdict.seconds = shared_seconds
            continue
        search_started = time.perf_counter()
        verdict = certifier.verify(problems[i], attack=eps > 0 and not ran_pgd,
                                   start=search_started)
        verdict.seconds += shared_seconds
        verdict.details.update(natural_correct=True, adversarial_robust=True)
        verdicts[i] = verdict
    return [verdict for verdict in verdicts if verdict is not None]
