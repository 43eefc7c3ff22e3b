"""The independent certificate checker: re-proves every leaf without the certifier's code.

It imports neither branch and bound nor the relaxations of :mod:`nobound.bounds`: the
network is taken in its dense form f = W_L ReLU(… ReLU(W₀ x + b₀) …) + b_L (from
:mod:`nobound.exact.dense`, which probes the layers' own forward passes) and bounded by
a plain DeepPoly back-substitution written out here. For a coefficient row Λ on z_k,

    z_k = W_k a_{k−1} + b_k,   relax a = ReLU(z) on [l, u] by  α z ≤ a ≤ s z + t

(s = u/(u − l), t = −s l, α = 1 if u > −l else 0; exact for stable neurons), the lower
bound walks down with Λ ← Λ⁺ α + Λ⁻ s (constant += Λ⁻ t) and ends with
Λ⁺ l₀ + Λ⁻ u₀ on the input box. Per tree node, the pre-activation bounds are the
intersection of this back-substitution with the parent's accepted bounds (valid, as the
parent's domain contains the child's), clamped by the splits on the path — the same
order of operations as the certifier, so its bounds are reproduced, not just re-bounded.
A leaf is accepted iff the lower bound of Σλ_i r_i(x) − Σβ_j s_j z_j(x) (β added to the
coefficients of the split z_j) is > 0 and reproduces the stored bound (with λ = 0 this
says the leaf's domain is empty), or its domain is empty by the bounds (some l > u). The
tree must be a tree whose internal nodes each split a not-yet-split neuron into the two
signs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nobound.certify.certificate import Certificate, ProblemCertificate, model_fingerprint
from nobound.exact.dense import DenseNetwork, dense_network

# Relative slack allowed between the stored leaf bound and the checker's own (round-off).
BOUND_TOLERANCE = 1e-6
# the same proof margin as the certifier (repeated, not imported: the checker stays
# independent of the code it checks)
PROOF_TOLERANCE = 1e-9


@dataclass
class CheckReport:
    valid: bool
    leaves: int = 0
    nodes: int = 0
    errors: list[str] = field(default_factory=list)


def _relaxation(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, ...]:
    """(α, s, t) of ReLU on [l, u] per neuron (see the module docstring)."""
    unstable = (lower < 0) & (upper > 0)
    width = np.where(unstable, upper - lower, 1.0)
    slope = np.where(unstable, upper / width, (lower >= 0).astype(float))
    intercept = np.where(unstable, -slope * lower, 0.0)
    alpha = np.where(unstable, (upper > -lower).astype(float), slope)
    return alpha, slope, intercept


def _back_substitute(net: DenseNetwork, rows: np.ndarray, constant: np.ndarray, top: int,
                     relaxations: list[tuple[np.ndarray, ...]], box: tuple[np.ndarray, ...],
                     betas: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Lower bound of rows · z_top + constant over the node's domain."""
    for k in range(top, -1, -1):
        constant = constant + rows @ net.biases[k]
        rows = rows @ net.weights[k]
        if k == 0:
            break
        alpha, slope, intercept = relaxations[k - 1]
        positive, negative = np.maximum(rows, 0), np.minimum(rows, 0)
        constant = constant + negative @ intercept
        rows = positive * alpha + negative * slope
        if betas and (k - 1) in betas:
            rows = rows - betas[k - 1]
    lower, upper = box
    return constant + np.maximum(rows, 0) @ lower + np.minimum(rows, 0) @ upper


def node_bounds(net: DenseNetwork, box: tuple[np.ndarray, np.ndarray],
                signs: list[np.ndarray], parent: list[tuple[np.ndarray, np.ndarray]] | None
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Accepted pre-activation bounds of every hidden layer on one node's domain."""
    bounds: list[tuple[np.ndarray, np.ndarray]] = []
    relaxations: list[tuple[np.ndarray, ...]] = []
    for k in range(net.num_hidden_layers):
        size = net.weights[k].shape[0]
        identity = np.eye(size)
        lower = _back_substitute(net, identity, np.zeros(size), k, relaxations, box)
        upper = -_back_substitute(net, -identity, np.zeros(size), k, relaxations, box)
        if parent is not None:
            lower, upper = np.maximum(lower, parent[k][0]), np.minimum(upper, parent[k][1])
        lower = np.where(signs[k] > 0, np.maximum(lower, 0), lower)
        upper = np.where(signs[k] < 0, np.minimum(upper, 0), upper)
        bounds.append((lower, upper))
        relaxations.append(_relaxation(lower, upper))
    return bounds


def _check_problem(net: DenseNetwork, problem: ProblemCertificate, report: CheckReport,
                   label: str) -> None:
    box = (np.asarray(problem.lower, float), np.asarray(problem.upper, float))
    spec, offset = np.asarray(problem.spec, float), np.asarray(problem.offset, float)
    nodes = problem.nodes
    if np.any(box[0] > box[1]):
        return  # an empty box has no unsafe point
    sizes = [w.shape[0] for w in net.weights[:-1]]
    root_signs = [np.zeros(n, np.int8) for n in sizes]
    stack: list[tuple[int, list[np.ndarray], Any]] = [(0, root_signs, None)]
    seen: set[int] = set()
    while stack:
        index, signs, parent = stack.pop()
        where = f"{label} node {index}"
        if not 0 <= index < len(nodes) or index in seen:
            report.errors.append(f"{where}: missing or reached twice (not a tree)")
            continue
        seen.add(index)
        report.nodes += 1
        node = nodes[index]
        bounds = node_bounds(net, box, signs, parent)
        empty = any(np.any(lo > hi) for lo, hi in bounds)
        if node.proof is None:
            if node.split is None or node.children is None or len(node.children) != 2:
                report.errors.append(f"{where}: neither a proof nor a split into two")
                continue
            k, neuron = int(node.split[0]), int(node.split[1])
            if not (0 <= k < len(sizes) and 0 <= neuron < sizes[k]) or signs[k][neuron]:
                report.errors.append(f"{where}: invalid or repeated split {node.split}")
                continue
            for child, sign in zip(node.children, (1, -1), strict=True):
                child_signs = [s.copy() for s in signs]
                child_signs[k][neuron] = sign
                stack.append((int(child), child_signs, bounds))
            continue
        report.leaves += 1
        proof = node.proof
        weights = np.asarray(proof.row_weights, float)
        if weights.shape != offset.shape or np.any(weights < 0):
            report.errors.append(f"{where}: row weights must be ≥ 0, one per row")
            continue
        betas: dict[int, np.ndarray] = {}
        bad_beta = False
        for k, neuron, beta in proof.betas:
            k, neuron = int(k), int(neuron)
            if not (0 <= k < len(sizes) and 0 <= neuron < sizes[k]) or beta < 0 or \
                    not signs[k][neuron]:
                bad_beta = True
                break
            betas.setdefault(k, np.zeros(sizes[k]))[neuron] += beta * signs[k][neuron]
        if bad_beta:
            report.errors.append(f"{where}: β must be ≥ 0 and belong to a split neuron")
            continue
        if empty:
            continue
        relaxations = [_relaxation(lo, hi) for lo, hi in bounds]
        value = float(_back_substitute(net, (weights @ spec)[None], np.array([weights @ offset]),
                                       net.num_hidden_layers, relaxations, box, betas)[0])
        if not value > PROOF_TOLERANCE:
            report.errors.append(f"{where}: bound {value:.6g} does not prove the leaf")
        elif value < proof.bound - BOUND_TOLERANCE * max(1.0, abs(proof.bound)):
            report.errors.append(f"{where}: stored bound {proof.bound:.9g} is not implied "
                                 f"(re-derived {value:.9g})")
    unreached = set(range(len(nodes))) - seen
    if unreached:
        report.errors.append(f"{label}: nodes {sorted(unreached)[:5]} are not in the tree")


def check_certificate(model: Any, certificate: Certificate,
                      problems: list[Any] | None = None) -> CheckReport:
    """Re-verify ``certificate`` for ``model``; with ``problems``, also require that it is
    about exactly those boxes and rows (in order)."""
    report = CheckReport(valid=False)
    if model_fingerprint(model) != certificate.model_fingerprint:
        report.errors.append("the certificate was made for another model")
        return report
    if problems is not None:
        if len(problems) != len(certificate.problems):
            report.errors.append(f"{len(certificate.problems)} problems in the certificate, "
                                 f"{len(problems)} expected")
            return report
        for i, (mine, theirs) in enumerate(zip(problems, certificate.problems, strict=True)):
            same = all(np.array_equal(np.asarray(a, float).reshape(-1),
                                      np.asarray(b, float).reshape(-1)) for a, b in
                       ((mine.lower, theirs.lower), (mine.upper, theirs.upper),
                        (mine.spec, theirs.spec), (mine.offset, theirs.offset)))
            if not same:
                report.errors.append(f"problem {i}: box or rows differ from the property")
        if report.errors:
            return report
    net = dense_network(model, certificate.input_shape)
    for i, problem in enumerate(certificate.problems):
        _check_problem(net, problem, report, f"problem {i}")
    report.valid = not report.errors
    return report
