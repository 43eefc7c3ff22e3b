"""Whole-box alpha-CROWN proofs on S-shape networks whose intermediate bounds were tightened:
the certifier records each tightened bound with the slopes that proved it
(:class:`~nobound.certify.certificate.NeuronBound`, S-shape layers as 2 n line slopes) and
the rigorous checker re-derives them; a proof it cannot confirm never counts.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.bounds import Box, compute_bounds
from nobound.bounds.alpha_crown import optimised_model_bounds
from nobound.certify.certificate import LeafProof, NeuronBound, TreeNode, problem_certificate
from nobound.certify.checker import check_proofs
from nobound.certify.pipeline import Certifier, CertifierConfig
from nobound.certify.problem import VerificationProblem
from nobound.nn import Linear, ReLU, Sequential, Sigmoid, Tanh

SPEC = np.array([[1.0, -1.0, 0.0]])
ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}


def network(rng: np.random.Generator, activations: list[str], width: int,
            scale: float) -> Sequential:
    """4 inputs, Linear layers of ``width`` each followed by one of ``activations``, then 3
    outputs; weights and biases N(0, scale²)."""
    layers: list = []
    previous = 4
    for name in activations:
        layers += [Linear(previous, width, dtype=np.float64), ACTIVATIONS[name]()]
        previous = width
    model = Sequential(*layers, Linear(previous, 3, dtype=np.float64))
    for layer in model.layers:
        if isinstance(layer, Linear):
            layer.weight.data = rng.normal(size=layer.weight.shape) * scale
            layer.bias.data = rng.normal(size=layer.bias.shape) * scale
    return model.eval()


def tightened_problem(mixed: bool) -> tuple:
    """(model, problem, sampled minimum of the row): a property that alpha-CROWN proves on
    the whole box only with tightened intermediate bounds (offset halfway between its bound
    on DeepPoly's intermediate bounds and its bound on the tightened ones)."""
    rng = np.random.default_rng(8 if mixed else 6)
    model = network(rng, ["sigmoid", "relu", "sigmoid", "relu"], 10, 1.0) if mixed \
        else network(rng, ["sigmoid"] * 4, 10, 1.5)
    x = rng.uniform(-1, 1, 4)
    lower, upper = x - 0.3, x + 0.3
    box = Box(Tensor(lower[None]), Tensor(upper[None]))
    with no_grad():
        plain = float(compute_bounds(model, box, method="alpha-crown",
                                     spec=SPEC[None]).lower.data.ravel()[0])
        tight = float(optimised_model_bounds(model, box, SPEC[None]).bounds.lower.data.ravel()[0])
        sampled = float(np.min(model(Tensor(rng.uniform(lower, upper, (20000, 4)))).data
                               @ SPEC[0]))
    assert tight > plain + 0.2 and sampled > tight
    problem = VerificationProblem(model, lower, upper, SPEC, np.array([-(plain + tight) / 2]))
    return model, problem, sampled


def config(steps: int = 20) -> CertifierConfig:
    return replace(CertifierConfig(), timeout=120.0, bab=False, intermediate_steps=steps,
                   methods=("ibp", "deeppoly", "alpha-crown"))


def whole_box_nodes(certifier: Certifier, problem: VerificationProblem) -> list[TreeNode]:
    """The certifier's whole-box alpha-CROWN proof of ``problem``, as it records it."""
    rows, slopes, tightened = certifier._stage_bounds([problem], "alpha-crown")
    row = int(np.argmax(rows[0]))
    proof = LeafProof([1.0], [], float(rows[0][row]), "alpha-crown",
                      certifier._recorded(slopes[0], row))
    return [TreeNode(proof=proof, tightened=tightened[0])]


def checked(certifier: Certifier, problem: VerificationProblem,
            nodes: list[TreeNode]) -> bool:
    return check_proofs(certifier.stored, [problem_certificate(problem, nodes)]).valid


def with_entries(nodes: list[TreeNode], entries: list[NeuronBound]) -> list[TreeNode]:
    return [replace(nodes[0], tightened=entries)]


def test_the_certifier_proves_with_tightened_bounds_and_only_with_them() -> None:
    for mixed in (False, True):
        model, problem, _ = tightened_problem(mixed)
        verdict = Certifier(model, (4,), config()).verify([problem])
        assert verdict.status == "certified" and verdict.method == "alpha-crown", \
            verdict.reason
        assert verdict.details["proof_check"] == "passed"
        assert Certifier(model, (4,), config(0)).verify([problem]).status == "unknown"


def test_the_check_re_derives_the_recorded_bounds_and_refuses_tampered_ones() -> None:
    for mixed in (False, True):
        model, problem, sampled = tightened_problem(mixed)
        certifier = Certifier(model, (4,), config())
        nodes = whole_box_nodes(certifier, problem)
        entries = nodes[0].tightened
        assert entries and {e.layer for e in entries} == {1, 2, 3}
        assert checked(certifier, problem, nodes)
        # the proof needs the tightened bounds: without them, or with their slopes
        # replaced by others, the checker's bounds are DeepPoly's (an entry can only narrow
        # them), which do not prove it
        assert not checked(certifier, problem, with_entries(nodes, []))
        rng = np.random.default_rng(0)
        for scale in (0.01, 0.3, 5.0):
            garbage = [replace(e, alphas=[list(np.clip(rng.normal(0.5, scale, len(a)), 0, 1))
                                          if len(a) == 10 else
                                          list(rng.normal(0.0, scale, len(a)))
                                          for a in e.alphas]) for e in entries]
            assert not checked(certifier, problem, with_entries(nodes, garbage))
        # the stored values are not trusted: claiming far tighter ones changes nothing, and
        # proves no claim that a sampled point breaks
        boasting = [replace(e, value=1e9) for e in entries]
        assert checked(certifier, problem, with_entries(nodes, boasting))
        false = replace(problem, offset=np.array([-sampled + 1e-3]))
        assert not checked(certifier, false, with_entries(nodes, boasting))


def test_malformed_tightened_entries_are_refused_with_a_reason() -> None:
    model, problem, _ = tightened_problem(mixed=True)
    certifier = Certifier(model, (4,), config())
    nodes = whole_box_nodes(certifier, problem)
    entry = next(e for e in nodes[0].tightened if e.layer == 3)
    # hidden layer 0 is a Sigmoid (2 n slopes), 1 a ReLU (n slopes in [0, 1])
    for alphas in ([entry.alphas[0][:10]] + entry.alphas[1:],           # n on an S-shape
                   [entry.alphas[0][:-1] + [np.inf]] + entry.alphas[1:],  # not finite
                   entry.alphas[:1] + [[1.5] * 10] + entry.alphas[2:],   # α > 1 on a ReLU
                   entry.alphas[:1] + [entry.alphas[0]] + entry.alphas[2:]):  # 2 n on a ReLU
        report = check_proofs(certifier.stored, [problem_certificate(
            problem, with_entries(nodes, [replace(entry, alphas=alphas)]))])
        assert not report.valid and "tightened bound" in report.errors[0], report.errors


@settings(max_examples=max(12, settings.default.max_examples), deadline=None)
@given(st.integers(0, 2**31 - 1),
       st.lists(st.sampled_from(["relu", "sigmoid", "tanh"]), min_size=2, max_size=3)
       .filter(lambda names: any(n != "relu" for n in names)),
       st.sampled_from([0.05, 0.3, 1.0]))
def test_the_certifier_never_certifies_a_sampled_violation(seed, activations, eps) -> None:
    # a row whose claim a sampled point breaks (by a hair) is never certified, whatever the
    # tightened bounds and slopes the whole-box proof records; the attack may find it
    rng = np.random.default_rng(seed)
    model = network(rng, activations, 6, 1.5)
    x = rng.uniform(-1, 1, 4)
    lower, upper = x - eps, x + eps
    spec = rng.normal(size=(1, 3))
    with no_grad():
        values = model(Tensor(rng.uniform(lower, upper, (5000, 4)))).data @ spec[0]
    problem = VerificationProblem(model, lower, upper, spec,
                                  np.array([-float(values.min()) - 1e-9]))
    verdict = Certifier(model, (4,), replace(config(10), timeout=60.0)).verify([problem])
    assert verdict.status != "certified"
