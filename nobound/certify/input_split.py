"""Branch and bound over the input box, for networks with few inputs (ACAS Xu: 5).

With few inputs, halving the box along one input dimension shrinks *every* neuron's
range, so the relaxation tightens everywhere at once — far more per split than fixing
one ReLU. A sub-domain here is a box [l, u] ⊆ [l₀, u₀]; the two halves along dimension d
at the midpoint m = (l_d + u_d)/2 cover it (both keep m: a point on the cut belongs to
both). Each box is bounded independently by CROWN on the dense network
(:mod:`nobound.certify.beta_crown` with no splits): interval bounds first, then every
hidden layer's bounds by back-substitution through the layers below (the intermediate
bounds of that box), then the rows, with α optimised for the rows (a few steps: on ACAS Xu
this needs several times fewer boxes than DeepPoly's slopes, docs/benchmarks.md).

Which dimension (``dimension_rule``):

* ``"bounds"`` (default) — strong branching over the few inputs: bound the two halves
  along *every* dimension, all in the one batched call, and keep the pair whose bounds
  leave the least to prove, Σ_halves min(0, best row's bound). No estimate: the halves
  kept are already bounded. It costs n₀ times the bounding of one split, and on ACAS Xu
  needs one to two orders of magnitude fewer boxes than the estimate below (the split
  changes the relaxation everywhere, which the linear bound of the parent cannot see;
  docs/benchmarks.md).
* ``"gradient"`` — the row's linear lower bound a·x + c has min over the box
  c + Σ_i min(a_i l_i, a_i u_i), so dimension i costs |a_i| (u_i − l_i) of it; halving
  the widest contribution (|a_i| × width, "bound gradient times width") is the greedy
  estimate; only the two halves it picks are bounded.

A box is proved when a row's lower bound is positive; the corner minimising the best row's
linear bound and the box centre are replayed in float64 as candidates, and PGD runs from
the worst boxes' corners every few rounds. Boxes are taken worst first, up to
``batch_size`` boxes bounded per round — fewer near the deadline: no more than the last
round's time per box lets it bound in time.

The split tree is a certificate like a ReLU-split tree: internal nodes name
(dimension, m), children are the halves x_d ≤ m and x_d ≥ m, leaves are proved by one row
with DeepPoly's (or the recorded optimised) slopes, which the checker re-derives on the
leaf's own box.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Any

import numpy as np

from nobound.backend import get_array_module
from nobound.certify.beta_crown import (
    SplitDomains,
    input_coefficients,
    optimise,
)
from nobound.certify.beta_crown_intermediate import tighten_intermediate
from nobound.certify.certificate import LeafProof, TreeNode
from nobound.certify.falsify import attack_problem
from nobound.certify.problem import PROOF_TOLERANCE, VerificationProblem
from nobound.exact.dense import DenseNetwork

# The certifier splits the input instead of ReLUs for networks with at most this many inputs.
MAX_SPLIT_INPUTS = 16
DIMENSION_RULES = ("bounds", "gradient")

Array = Any


def interval_domains(network: DenseNetwork, lower: Array, upper: Array) -> SplitDomains:
    """Interval bounds of every hidden pre-activation for N boxes (N, n₀), no splits."""
    xp = get_array_module(lower)
    lows, highs, low, high = [], [], lower, upper
    for k in range(len(network.weights) - 1):
        weight = xp.asarray(network.weights[k])
        centre, radius = (low + high) / 2, (high - low) / 2
        middle = centre @ weight.T + xp.asarray(network.biases[k])
        spread = radius @ xp.abs(weight).T
        lows.append(middle - spread)
        highs.append(middle + spread)
        low, high = xp.maximum(lows[-1], 0.0), xp.maximum(highs[-1], 0.0)
    signs = [xp.zeros(lo.shape, xp.int8) for lo in lows]
    return SplitDomains(lows, highs, signs, lower, upper)


def bound_boxes(network: DenseNetwork, lower: Array, upper: Array, spec: Array,
                offset: Array, alpha_steps: int = 0) -> tuple[Array, Array, list | None]:
    """(lower bounds (N, K) of spec·f + offset on each box, input coefficients (N, K, n₀),
    the optimised α per hidden layer (N, K, n_j), or None with DeepPoly's)."""
    xp = get_array_module(lower)
    count = lower.shape[0]
    domains = tighten_intermediate(network, interval_domains(network, lower, upper), steps=0)
    objective = xp.broadcast_to(xp.asarray(spec), (count, *spec.shape))
    offsets = xp.broadcast_to(xp.asarray(offset), (count, spec.shape[0]))
    bound, multipliers = optimise(network, domains, objective, offsets, steps=alpha_steps)
    return bound, input_coefficients(network, domains, objective, offsets, multipliers), \
        multipliers.alpha if alpha_steps else None


def split_dimension(coefficients: Array, lower: Array, upper: Array) -> Array:
    """(N,) the input dimension with the largest |a_i| (u_i − l_i) (rows: (N, n₀))."""
    xp = get_array_module(coefficients)
    return xp.argmax(xp.abs(coefficients) * (upper - lower), axis=1)


def input_split_search(problem: VerificationProblem, network: DenseNetwork,
                       deadline: float = np.inf, max_boxes: int = 200_000,
                       batch_size: int = 640, alpha_steps: int = 5, attack_every: int = 10,
                       attack_steps: int = 20, seed: int = 0,
                       split_root: bool = False, dimension_rule: str = "bounds") -> dict:
    """Decide ``problem`` by splitting its input box (module docstring).

    Returns {"status", "nodes" (the split tree, for certificates), "counterexample",
    "bounded" (every box bounded, the halves not kept included), "lower_bound", "reason",
    "rounds", "seconds"}. ``batch_size``: boxes bounded per round (at least one split's
    worth). ``split_root``: split the box even if its bound proves it
    (:func:`repair_refused_leaves`: the checker refused that proof).
    """
    if dimension_rule not in DIMENSION_RULES:
        raise ValueError(f"unknown dimension rule {dimension_rule!r}; "
                         f"choose from {', '.join(DIMENSION_RULES)}")
    start = time.perf_counter()
    spec, offset = problem.spec, problem.offset
    nodes: list[TreeNode] = [TreeNode()]
    # (best row's bound, tie-break, box lower, box upper, that row's input coefficients,
    #  tree node)
    heap: list[tuple[float, int, np.ndarray, np.ndarray, np.ndarray, int]] = []
    order = itertools.count()
    bounded = 0

    def result(status: str, reason: str = "", found: Any = None, rounds: int = 0) -> dict:
        return {"status": status, "nodes": nodes, "counterexample": found,
                "bounded": bounded, "lower_bound": heap[0][0] if heap else np.inf,
                "reason": reason, "rounds": rounds, "seconds": time.perf_counter() - start}

    boxes_lower = problem.lower.reshape(1, -1)
    boxes_upper = problem.upper.reshape(1, -1)
    indices = [0]
    # the boxes split last round: heap entries, and their bounds (P, n₀)
    parents: list[tuple] = []
    lower = upper = boxes_lower
    inputs = boxes_lower.shape[1]
    # halves bounded per split: both, along every dimension or along the estimated one
    halves = 2 * inputs if dimension_rule == "bounds" else 2
    for round_index in itertools.count():
        round_start = time.perf_counter()
        bound, coefficients, alphas = bound_boxes(network, boxes_lower, boxes_upper, spec,
                                                  offset, alpha_steps)
        bounded += len(boxes_lower)
        per_box = (time.perf_counter() - round_start) / len(boxes_lower)
        rows = np.argmax(bound, axis=1)
        best = bound[np.arange(len(rows)), rows]
        chosen = coefficients[np.arange(len(rows)), rows]
        corners = np.where(chosen < 0, boxes_upper, boxes_lower)
        candidates = np.concatenate([corners, (boxes_lower + boxes_upper) / 2])
        found = problem.find_counterexample(candidates.reshape(-1, *problem.input_shape))
        if found is not None:
            return result("falsified", "counterexample", found, round_index)
        # a parent's bound holds on its halves too: each box's value in the search (its
        # place in the queue, the score of a split) is the larger of its own and its
        # parent's — the relaxation of a half can be far looser than its parent's (ACAS
        # Xu: −3.6 under a parent at −0.84); only a box's own bound proves it
        # (every layout of halves lists the P parents' halves in parent order, again and
        # again: half i belongs to parent i mod P)
        value = best if round_index == 0 else \
            np.maximum(best, np.resize([p[0] for p in parents], len(best)))
        if round_index > 0 and dimension_rule == "bounds":
            kept, dimension = _kept_halves(best, value, lower, upper)
            boxes_lower, boxes_upper = boxes_lower[kept], boxes_upper[kept]
            rows, best, chosen, value = rows[kept], best[kept], chosen[kept], value[kept]
            alphas = None if alphas is None else [a[kept] for a in alphas]
            _record_splits(nodes, parents, dimension, boxes_lower)
        for n, index in enumerate(indices):
            if best[n] > PROOF_TOLERANCE and not (split_root and round_index == 0):
                weights = np.zeros(problem.num_rows)
                weights[rows[n]] = 1.0
                recorded = [] if alphas is None else [a[n, rows[n]].tolist() for a in alphas]
                nodes[index].proof = LeafProof(weights.tolist(), [], float(best[n]), "crown",
                                               recorded)
                continue
            heapq.heappush(heap, (float(value[n]), next(order), boxes_lower[n],
                                  boxes_upper[n], chosen[n], index))
        if not heap:
            return result("certified", rounds=round_index)
        if attack_every and round_index % attack_every == attack_every - 1:
            starts = np.stack([np.where(e[4] < 0, e[3], e[2]) for e in heapq.nsmallest(8, heap)])
            found = attack_problem(problem, starts.reshape(-1, *problem.input_shape),
                                   steps=attack_steps, restarts=0, seed=seed + round_index,
                                   deadline=deadline)
            if found is not None:
                return result("falsified", "counterexample", found, round_index)
        if time.perf_counter() > deadline:
            return result("unknown", "timeout", rounds=round_index)
        if len(nodes) >= max_boxes:
            return result("unknown", "node limit", rounds=round_index)
        count = min(max(1, batch_size // halves), len(heap))
        if np.isfinite(deadline):  # no more boxes than the last round's pace bounds in time
            affordable = int((deadline - time.perf_counter())
                             / (halves * max(per_box, 1e-9)))
            count = max(1, min(count, affordable))
        parents = [heapq.heappop(heap) for _ in range(count)]
        lower = np.stack([p[2] for p in parents])
        upper = np.stack([p[3] for p in parents])
        if dimension_rule == "bounds":
            boxes_lower, boxes_upper = _halves_everywhere(lower, upper)
        else:
            dimension = split_dimension(np.stack([p[4] for p in parents]), lower, upper)
            boxes_lower, boxes_upper = _halves(lower, upper, dimension)
        first = len(nodes)
        nodes += [TreeNode() for _ in range(2 * len(parents))]
        for n, parent in enumerate(parents):
            nodes[parent[5]].children = (first + n, first + len(parents) + n)
        if dimension_rule == "gradient":
            _record_splits(nodes, parents, dimension, boxes_lower)
        indices = list(range(first, first + 2 * len(parents)))
    raise AssertionError("unreachable")


def _record_splits(nodes: list[TreeNode], parents: list[tuple], dimension: np.ndarray,
                   halves_lower: np.ndarray) -> None:
    """Each parent's split in its tree node: (dimension, m), m the upper half's lower end
    (the halves laid out as :func:`_halves` lays them: the P lower halves, then the P
    upper)."""
    for n, parent in enumerate(parents):
        middle = float(halves_lower[len(parents) + n, dimension[n]])
        nodes[parent[5]].input_split = (int(dimension[n]), middle)


def _halves(lower: np.ndarray, upper: np.ndarray, dimension: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """The halves x_d ≤ m and x_d ≥ m (m the midpoint; both keep it, so they cover the
    box) of P boxes (P, n₀) along ``dimension`` (P,): the P lower halves, then the P upper."""
    count = np.arange(len(lower))
    middle = (lower[count, dimension] + upper[count, dimension]) / 2
    below, above = upper.copy(), lower.copy()
    below[count, dimension] = middle
    above[count, dimension] = middle
    return np.concatenate([lower, above]), np.concatenate([below, upper])


def _halves_everywhere(lower: np.ndarray, upper: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_halves` along each dimension d in turn: box 2 P d + P s + p is half s (0:
    lower) of box p along d."""
    pairs = [_halves(lower, upper, np.full(len(lower), d)) for d in range(lower.shape[1])]
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def _kept_halves(best: np.ndarray, value: np.ndarray, lower: np.ndarray, upper: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the two halves kept for each of the P boxes [lower, upper] (P, n₀) in
    :func:`_halves_everywhere`' layout — the lower halves, then the upper ones, as the search
    expects its children — and the dimension of each), given each half's best row's own
    bound ``best`` and its search ``value`` (at least its parent's bound): the dimension
    that proves the most halves, then whose halves leave the least to prove,
    Σ_halves min(0, value) — proving a half outright ends its work, however the other
    half's bound looks; never a dimension the box has no width in (its halves are the box)
    unless it has none."""
    parents, inputs = lower.shape
    proved = (best.reshape(inputs, 2, parents) > PROOF_TOLERANCE).sum(axis=1)
    left = np.minimum(value.reshape(inputs, 2, parents), 0.0).sum(axis=1)
    wide = (upper > lower).T | ~np.any(upper > lower, axis=1)
    # lexicographic: ``left`` is finite and ≤ 0, so one more proved half always wins
    order = np.lexsort((np.where(wide, left, -np.inf), np.where(wide, proved, -1)), axis=0)
    chosen = order[-1]
    first = 2 * parents * chosen + np.arange(parents)
    return np.concatenate([first, first + parents]), chosen


def repair_refused_leaves(problem: VerificationProblem, network: DenseNetwork,
                          nodes: list[TreeNode], refused: dict[int, tuple[np.ndarray,
                                                                           np.ndarray]],
                          deadline: float = np.inf, max_boxes: int = 200_000,
                          **search: Any) -> dict:
    """Split again the leaves of an input-split tree whose proofs the rigorous checker
    refused (``refused``: leaf index → its box). Each such box gets a search of its own
    that splits it at once (``split_root``); its tree replaces the leaf, so ``nodes``
    stays one tree over the whole box. Returns like :func:`input_split_search`
    ("certified" when every refused leaf was re-proved; "falsified" with a counterexample
    inside a leaf's box, hence inside the problem's box)."""
    from dataclasses import replace

    start, bounded, grown = time.perf_counter(), 0, 0
    for index, (lower, upper) in refused.items():
        sub = input_split_search(replace(problem, lower=lower.reshape(problem.input_shape),
                                         upper=upper.reshape(problem.input_shape)),
                                 network, deadline, max(1, max_boxes - grown),
                                 split_root=True, **search)
        grown += len(sub["nodes"])
        bounded += sub["bounded"]
        if sub["status"] != "certified":
            return {**sub, "nodes": nodes, "bounded": bounded,
                    "seconds": time.perf_counter() - start}
        first = len(nodes)

        def moved(j: int, first: int = first, index: int = index) -> int:
            return index if j == 0 else first + j - 1

        for j, node in enumerate(sub["nodes"]):
            if node.children is not None:
                node.children = tuple(moved(int(c)) for c in node.children)
            if j == 0:
                nodes[index] = node
            else:
                nodes.append(node)
    return {"status": "certified", "nodes": nodes, "counterexample": None, "bounded": bounded,
            "lower_bound": np.inf, "reason": "", "rounds": 0,
            "seconds": time.perf_counter() - start}
