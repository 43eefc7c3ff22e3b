"""The independent certificate checker: re-proves every leaf, rigorously, without the
certifier's code.

It imports neither branch and bound nor the relaxations of :mod:`nobound.bounds`: the
network is the interval dense form of :mod:`nobound.certify.stored_network` (real
arithmetic on the stored weights) and is bounded by a plain DeepPoly back-substitution
written out here. For a coefficient row Λ on z_k,

    z_k = W_k a_{k−1} + b_k,   relax a = ReLU(z) on [l, u] by  α z ≤ a ≤ s z + t

(s = u/(u − l), t ≥ −s l and t ≥ u(1 − s), α = 1 if u > −l else 0; exact for stable
neurons), the lower bound walks down with Λ ← Λ⁺ α + Λ⁻ s (constant += Λ⁻ t) and ends
with Λ⁺ l₀ + Λ⁻ u₀ on the input box. Every number is a true bound in real arithmetic:
products carry the error terms of :mod:`nobound.certify.rounding`, which are folded into
the constant with the magnitudes of the variables they multiply, and t is rounded upward
so the upper line really lies above ReLU (docs/certifier.md, "Floating-point soundness").
Per tree node, the pre-activation bounds are the intersection of this back-substitution
with the parent's accepted bounds (valid, as the parent's domain contains the child's),
clamped by the splits on the path — the same order of operations as the certifier, so its
bounds are reproduced, not just re-bounded. A half of an input split is bounded on its own
box alone, as the input-split search bounds it (:func:`derive_node_bounds`). A leaf is
accepted iff the rigorous lower bound of Σλ_i r_i(x) − Σβ_j s_j z_j(x) (β added to the
coefficients of the split z_j) —
or, without β, of Σλ_i r_i(x) from the interval of the last hidden layer (IBP's bound,
which DeepPoly does not always beat) — is > 0 — no margin — and, for a DeepPoly or LP
leaf, reproduces the stored bound (with λ = 0 this says the leaf's domain is empty), or
its domain is empty by the bounds (some l > u). The tree must be a tree whose internal
nodes each split a not-yet-split neuron into the two signs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nobound.autodiff.tensor import Tensor, no_grad
from nobound.certify.certificate import Certificate, ProblemCertificate, model_fingerprint
from nobound.certify.checker_layers import (
    RELU,
    Elementwise,
    Lines,
    MaxPoolWindows,
    is_relu,
    magnitude,
    max_pool_windows,
)
from nobound.certify.rounding import (
    SMALLEST_SUBNORMAL,
    any_nonzero,
    down,
    gamma_factor,
    lower_rows,
    matmul_error,
    product_error_rows,
    rows_times_matrix,
    stage_matrix,
    up,
    upper_magnitude_times,
    upper_rows,
    upper_sum,
)
from nobound.certify.stored_network import StoredNetwork, stored_network
from nobound.nn.activation import Flatten, ReLU, Sigmoid, Tanh
from nobound.nn.pooling import MaxPool2d

# Relative slack allowed between the stored leaf bound (computed by the certifier without
# outward rounding) and the checker's rigorous one.
BOUND_TOLERANCE = 1e-6
# Leaves whose stored bound must be reproduced: the ones the checker's DeepPoly re-derives.
REPRODUCED_METHODS = ("deeppoly", "lp")

Interval = tuple[np.ndarray, np.ndarray]


# what a node's derivation returns when the deadline passed before it was done
OUT_OF_TIME = "the check ran out of time"


@dataclass
class CheckReport:
    valid: bool
    leaves: int = 0
    nodes: int = 0
    errors: list[str] = field(default_factory=list)
    # the deadline passed before every node was checked (then ``valid`` is False)
    out_of_time: bool = False
    # (problem, node) of every leaf whose proof was not accepted
    refused: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class CheckedNetwork(StoredNetwork):
    """A stored network whose hidden layers are chains of ReLU, Sigmoid, Tanh and MaxPool
    operations (:mod:`nobound.certify.checker_layers`), one chain per hidden layer, in the
    model's order. A plain :class:`StoredNetwork` has one ReLU per hidden layer."""

    activations: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass
class _Run:
    """A run of affine layers, as :func:`stored_network` reads a model."""

    layers: list[Any]


def _operation(layer: Any, shape: tuple[int, ...]) -> Any:
    """The checker's operation for an activation layer, None for an affine one."""
    if isinstance(layer, ReLU):
        return RELU
    if isinstance(layer, (Sigmoid, Tanh)):
        return Elementwise("sigmoid" if isinstance(layer, Sigmoid) else "tanh")
    if isinstance(layer, MaxPool2d):
        if len(shape) != 3:
            raise TypeError(f"MaxPool2d on data of shape {shape} is not a layer the sound "
                            f"checker knows")
        return max_pool_windows(layer.kernel_size, layer.stride, layer.padding, shape)
    return None


def checked_network(model: Any, input_shape: tuple[int, ...]) -> StoredNetwork:
    """The network the checker bounds: :func:`stored_network` for affine/ReLU chains, else
    a :class:`CheckedNetwork` whose affine runs are read by :func:`stored_network` (the
    same rigorous weights and radii) and whose activations are chains of ReLU, Sigmoid,
    Tanh and MaxPool. Raises TypeError, naming it, on a layer it does not know."""
    layers = list(getattr(model, "layers", [model]))
    if not any(isinstance(layer, (Sigmoid, Tanh, MaxPool2d)) for layer in layers):
        return stored_network(model, input_shape)
    shape = tuple(int(n) for n in input_shape)
    stages: list[StoredNetwork] = []
    chains: list[list[Any]] = []
    run: list[Any] = []
    run_shape = shape
    for layer in layers:
        operation = _operation(layer, shape)
        if operation is None:
            with no_grad():  # the shape after an affine layer, from a zero input
                shape = tuple(layer(Tensor(np.zeros((1, *shape)))).shape[1:])
            run.append(layer)
            continue
        if all(isinstance(r, Flatten) for r in run) and chains:
            run = []  # a Flatten between two activations: the same flat vector
        if run or not chains:  # a new hidden layer (also one with no affine layer before)
            stages.append(stored_network(_Run(run), run_shape))
            chains.append([])
        chains[-1].append(operation)  # else: a second operation of the same hidden layer
        if isinstance(layer, MaxPool2d):
            shape = layer.output_shape(shape)
        run, run_shape = [], shape
    stages.append(stored_network(_Run(run), run_shape))
    return CheckedNetwork([s.weights[0] for s in stages], [s.biases[0] for s in stages],
                          [s.weight_radii[0] for s in stages], [s.bias_radii[0] for s in stages],
                          tuple(int(n) for n in input_shape),
                          activations=[tuple(chain) for chain in chains])


def _chain(net: StoredNetwork, k: int) -> tuple[Any, ...]:
    activations = getattr(net, "activations", None)
    return activations[k] if activations else (RELU,)


def _relu_layers(net: StoredNetwork) -> list[bool]:
    return [is_relu(_chain(net, k)) for k in range(net.num_hidden_layers)]


def _s_shape_layers(net: StoredNetwork) -> list[bool]:
    """Hidden layers that are one Sigmoid or Tanh: a proof may record their line slopes."""
    return [len(chain) == 1 and isinstance(chain[0], Elementwise) and chain[0].kind != "relu"
            for chain in (_chain(net, k) for k in range(net.num_hidden_layers))]


def layer_relaxation(net: StoredNetwork, k: int, bounds: Interval) -> list[Any]:
    """The relaxation of each operation of hidden layer k, from the bounds of z_k: each
    has ``outputs`` (its output interval) and ``back`` (rows on its output → its input)."""
    relaxed: list[Any] = []
    for operation in _chain(net, k):
        if isinstance(operation, MaxPoolWindows) and relaxed and \
                isinstance(relaxed[-1], Lines) and relaxed[-1].lower_line_minimum is not None:
            relaxed.append(operation.relax(bounds, choice=relaxed[-1].lower_line_minimum))
        else:
            relaxed.append(operation.relax(bounds))
        bounds = relaxed[-1].outputs
    return relaxed


def activation_interval(net: StoredNetwork, k: int, bounds: Interval) -> Interval:
    """The interval of hidden layer k's activations a_k from the bounds of z_k."""
    for operation in _chain(net, k):
        bounds = operation.interval(bounds)
    return bounds


def _magnitude(bounds: Interval) -> np.ndarray:
    return magnitude(bounds)


def _through_stage(rows: np.ndarray, error: np.ndarray | None, weight: np.ndarray,
                   radius: np.ndarray, below: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fl(Λ W), F): Λ* W* a ≥ fl(Λ W)·a − F per row for every real a with |a| ≤ ``below``,
    where |Λ* − Λ| ≤ E (``error``; exact when None) and |W* − W| ≤ R.

    Each entry of fl(Λ W) is off by at most (2.5nu|Λ| + E)|W| + (|Λ| + E)R + 2nη, so
    F = 2.5nu |Λ|·v + E·v + (|Λ| + E)·(R below) + 2nη Σ below with v ≥ |W| below: the
    products are re-associated (in real arithmetic, (|Λ||W|) below = |Λ| (|W| below)),
    so no error matrix is formed — one matrix-vector product per stack entry instead of a
    matrix product per stage."""
    n = weight.shape[0]
    matrix = stage_matrix(weight)
    product = rows_times_matrix(rows, matrix)
    size = np.abs(rows)
    reach = upper_magnitude_times(matrix, below)               # ≥ |W| below
    fold = up(up(gamma_factor(n) * upper_rows(size, reach))
              + up(2.0 * n * SMALLEST_SUBNORMAL * upper_sum(below)[..., None]))
    if error is not None:
        fold = up(fold + upper_rows(error, reach))
    if any_nonzero(radius):
        reach_radius = upper_rows(radius, below)               # ≥ R below
        spread = size if error is None else up(size + error)
        fold = up(fold + upper_rows(spread, reach_radius))
    return product, fold


def _bias_term(rows: np.ndarray, error: np.ndarray | None, bias: np.ndarray,
               radius: np.ndarray) -> np.ndarray:
    """A lower bound of Λ* · b* (real), per row."""
    value = lower_rows(rows, bias)
    penalty = upper_rows(np.abs(rows), radius) if any_nonzero(radius) else 0.0
    if error is not None:
        penalty = up(penalty + upper_rows(error, up(np.abs(bias) + radius)))
    return down(value - penalty)


def _back_substitute(net: StoredNetwork, rows: np.ndarray, constant: np.ndarray, top: int,
                     relaxations: list[list[Any]], bounds: list[Interval],
                     box: Interval, betas: dict[int, np.ndarray] | None = None,
                     error: np.ndarray | None = None) -> np.ndarray:
    """A rigorous lower bound of rows* · z_top + constant over the node's domain, where the
    real coefficient rows* is within ``error`` of ``rows`` (exact when None).

    Shapes: rows (..., R, n_top), constant (..., R); the bounds, relaxations, box and β
    (..., n) of one leaf (no leading axis) or of a stack of leaves (a leading axis that
    broadcasts with the rows'); the result is (..., R). Every rounding error is folded
    into the constant with the magnitude of the variable it multiplies, at once."""
    for k in range(top, -1, -1):
        constant = down(constant + _bias_term(rows, error, net.biases[k], net.bias_radii[k]))
        below = _magnitude(box if k == 0 else relaxations[k - 1][-1].outputs)
        rows, fold = _through_stage(rows, error, net.weights[k], net.weight_radii[k], below)
        constant, error = down(constant - fold), None
        if k == 0:
            break
        chain = relaxations[k - 1]
        for i in range(len(chain) - 1, -1, -1):  # the layer's operations, last first
            inputs = _magnitude(chain[i - 1].outputs if i else bounds[k - 1])
            rows, fold, added = chain[i].back(rows, inputs)
            constant = down(down(constant + added) - fold)
        if betas and (k - 1) in betas:
            beta = betas[k - 1]
            rows = rows - beta[..., None, :]
            # one rounded difference per entry, and none where β = 0 (exact)
            where = np.where(beta != 0, _magnitude(bounds[k - 1]), 0.0)
            constant = down(constant - product_error_rows(rows, where))
    lower, upper = box
    value = down(lower_rows(np.maximum(rows, 0), lower) + lower_rows(np.minimum(rows, 0), upper))
    return down(constant + value)


def _interval_lower(weight: np.ndarray, bias: np.ndarray, radius: np.ndarray,
                    bias_radius: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A lower bound of W* a + b* over low ≤ a ≤ high (real arithmetic; a (..., n))."""
    value = down(lower_rows(np.maximum(weight, 0), low) + lower_rows(np.minimum(weight, 0), high))
    value = down(value + down(bias - bias_radius))
    if any_nonzero(radius):
        value = down(value - upper_rows(radius, _magnitude((low, high))))
    return value


def _interval(net: StoredNetwork, k: int, low: np.ndarray, high: np.ndarray) -> Interval:
    """Interval bounds of z_k = W_k a + b_k for a in [low, high]."""
    weight, bias = net.weights[k], net.biases[k]
    radius, bias_radius = net.weight_radii[k], net.bias_radii[k]
    lower = _interval_lower(weight, bias, radius, bias_radius, low, high)
    upper = -_interval_lower(-weight, -bias, radius, bias_radius, low, high)
    return lower, upper


def interval_step(net: StoredNetwork, k: int, previous: Interval) -> Interval:
    """Interval bounds of z_k from the bounds of z_{k−1} (through layer k−1's activations
    and stage k)."""
    return _interval(net, k, *activation_interval(net, k - 1, previous))


def node_bounds(net: StoredNetwork, box: Interval, signs: list[np.ndarray],
                parent: list[Interval] | None, interval_chain: bool = False
                ) -> list[Interval]:
    """Rigorous pre-activation bounds of every hidden layer on one node's domain — or on
    each of a stack of nodes' domains: box, signs and parent bounds with a leading axis
    (..., n), on networks whose hidden layers are ReLUs (the other relaxations take one
    node).

    As the certifier does: interval bounds first (from the box for the first layer, where
    they are what back-substitution gives; from the layer before otherwise), intersected
    with the parent's bounds and clamped by the splits; then a back-substitution row only
    for the neurons still unstable (a stable neuron's relaxation is exact whatever its
    bounds), intersected again. A stack back-substitutes the neurons unstable in any of
    its nodes, once for all of them, and each node takes the rows of its own unstable ones.

    ``interval_chain``: the interval estimate of layer k comes from layer k − 1's interval
    estimate, not from its back-substituted bounds — what the input-split search does on
    each box (:func:`nobound.certify.input_split.interval_domains`, then one
    back-substitution per layer). The triangle relaxation is not monotone in its bounds (a
    tighter [l, u] can flip the area heuristic's lower slope or tilt the upper line so that
    the linear bound over the box gets worse), so reproducing the search's bounds is what
    lets the search's proof, with the α it optimised for *those* bounds, be re-derived."""
    bounds: list[Interval] = []
    relaxations: list[list[Any]] = []
    relu = _relu_layers(net)
    estimate: Interval | None = None
    for k in range(net.num_hidden_layers):
        if k == 0:
            lower, upper = _interval(net, 0, *box)
        else:
            lower, upper = interval_step(net, k, estimate if interval_chain else bounds[-1])
        if interval_chain:
            estimate = (lower.copy(), upper.copy())
        if parent is not None:
            lower, upper = np.maximum(lower, parent[k][0]), np.minimum(upper, parent[k][1])
        lower = np.where(signs[k] > 0, np.maximum(lower, 0), lower)
        upper = np.where(signs[k] < 0, np.minimum(upper, 0), upper)
        # a ReLU is exact on a stable neuron whatever its bounds; the other layers'
        # relaxations depend on every bound
        open_ = (lower < 0) & (upper > 0) if relu[k] else lower < upper
        unstable = np.flatnonzero(open_.reshape(-1, open_.shape[-1]).any(axis=0))
        if k and unstable.size:
            count = unstable.size
            rows = np.zeros((count, net.weights[k].shape[0]))  # unit rows e_i,
            rows[np.arange(count), unstable] = 1.0  # without an n × n identity
            both = _back_substitute(net, np.concatenate([rows, -rows]), np.zeros(2 * count),
                                    k, relaxations, bounds, box)
            own = open_[..., unstable]
            lower[..., unstable] = np.where(
                own, np.maximum(lower[..., unstable], both[..., :count]), lower[..., unstable])
            upper[..., unstable] = np.where(
                own, np.minimum(upper[..., unstable], -both[..., count:]), upper[..., unstable])
            lower = np.where(signs[k] > 0, np.maximum(lower, 0), lower)
            upper = np.where(signs[k] < 0, np.minimum(upper, 0), upper)
        bounds.append((lower, upper))
        relaxations.append(layer_relaxation(net, k, (lower, upper)))
    return bounds


def leaf_value(net: StoredNetwork, box: Interval, bounds: list[Interval], spec: np.ndarray,
               offset: np.ndarray, weights: np.ndarray,
               betas: dict[int, np.ndarray] | None = None,
               alphas: list[np.ndarray | None] | None = None) -> float:
    """A rigorous lower bound of Σλ_i r_i(x) − Σβ_j s_j z_j(x) over a leaf's domain
    (``alphas``: recorded lower slopes per hidden layer, None = DeepPoly's)."""
    recorded = any(a is not None for a in alphas or [])
    return float(leaf_values(net, box, bounds, spec, offset, weights, betas, alphas,
                             np.asarray(recorded), np.asarray(bool(betas))))


def leaf_values(net: StoredNetwork, box: Interval, bounds: list[Interval], spec: np.ndarray,
                offset: np.ndarray, weights: np.ndarray,
                betas: dict[int, np.ndarray] | None, alphas: list[np.ndarray | None] | None,
                recorded: np.ndarray, multiplied: np.ndarray) -> np.ndarray:
    """:func:`leaf_value` of one leaf, or of a stack of leaves of one problem (box, bounds,
    row weights, β·s and α with a leading axis; nan in α: that leaf records none there).
    ``recorded``: the leaf records α (else the usual other choices are tried when its bound
    is not positive); ``multiplied``: it records β (else IBP's bound may win)."""
    rows, row_error = matmul_error(weights[..., None, :], spec)
    constant = lower_rows(weights[..., None, :], offset)
    own = [layer_relaxation(net, k, b) for k, b in enumerate(bounds)]
    top = net.num_hidden_layers

    def bound(choice: list[np.ndarray | None] | None) -> np.ndarray:
        return _back_substitute(net, rows, constant, top, _with_alphas(own, choice), bounds,
                                box, betas, row_error)[..., 0]

    def better(value: np.ndarray, other: np.ndarray, where: np.ndarray) -> np.ndarray:
        return np.where(where & (other > value), other, value)  # max(value, other) there

    value = bound(alphas)
    relu = _relu_layers(net)
    retry = ~(value > 0) & ~recorded
    if any(relu) and np.any(retry):
        # the area heuristic α = 1[u > −l] is only a heuristic: with the checker's own (often
        # tighter) bounds it can choose worse lower lines than the certifier did; any
        # α ∈ [0, 1] is sound, so the usual other choices are tried too
        def each(slopes: Any) -> list[np.ndarray | None]:
            return [slopes(r[0]) if is_relu_layer else None
                    for r, is_relu_layer in zip(own, relu, strict=True)]

        for choice in (each(lambda r: np.zeros_like(r.lower_slope)),
                       each(lambda r: np.ones_like(r.lower_slope)),
                       each(lambda r: r.upper_slope)):
            value = better(value, bound(choice), retry)
            retry = retry & ~(value > 0)
            if not np.any(retry):
                break
    if bounds:  # IBP-style (a proof with split multipliers is held to them):
        # on IBP-trained networks DeepPoly can be the looser of the two
        value = better(value, _interval_value(net, rows, row_error, constant, bounds)[..., 0],
                       ~multiplied)
    return value


def _interval_value(net: StoredNetwork, rows: np.ndarray, error: np.ndarray,
                    constant: np.ndarray, bounds: list[Interval]) -> np.ndarray:
    """A rigorous lower bound of rows* · z_L + constant from the interval of the last
    hidden layer's activations alone (valid for Σλ_i r_i, hence for the Lagrangian's
    purpose: where it is > 0 no point of the leaf is unsafe)."""
    top = net.num_hidden_layers
    constant = down(constant + _bias_term(rows, error, net.biases[top], net.bias_radii[top]))
    low, high = activation_interval(net, top - 1, bounds[-1])
    rows, fold = _through_stage(rows, error, net.weights[top], net.weight_radii[top],
                                _magnitude((low, high)))
    value = down(lower_rows(np.maximum(rows, 0), low) + lower_rows(np.minimum(rows, 0), high))
    return down(constant + down(value - fold))


def _with_alphas(relaxations: list[list[Any]],
                 alphas: list[np.ndarray | None] | None) -> list[list[Any]]:
    """Relaxations whose unstable ReLU neurons take recorded lower slopes (any α ∈ [0, 1]
    gives a valid lower line α z ≤ ReLU(z); stable neurons keep their exact slope). Only
    layers that are one ReLU take α (:func:`_check_problem` rejects any other)."""
    if not alphas:
        return relaxations
    out = []
    for k, relaxed in enumerate(relaxations):
        recorded = alphas[k] if k < len(alphas) else None
        if recorded is not None and len(relaxed) == 1 and isinstance(relaxed[0], Lines):
            if relaxed[0].relu:
                relaxed = [relaxed[0].with_lower_slopes(recorded)]
            elif relaxed[0].reslope is not None:  # an S-shape: (lower slopes, upper slopes)
                half = recorded.shape[-1] // 2
                relaxed = [relaxed[0].reslope(recorded[..., :half], recorded[..., half:])]
        out.append(relaxed)
    return out


def recorded_alphas(raw: list[list[float]], sizes: list[int],
                    s_shapes: list[bool] | None = None) -> list[np.ndarray | None] | None:
    """Per-layer α vectors from a certificate ([] = DeepPoly's); None when malformed. On a
    layer that is one Sigmoid/Tanh (``s_shapes``) the entry is its line slopes, 2 n finite
    numbers (lower lines', then upper lines'); elsewhere n lower ReLU slopes in [0, 1]."""
    alphas: list[np.ndarray | None] = []
    for k, values in enumerate(raw):
        if k >= len(sizes):
            return None
        if len(values) == 0:
            alphas.append(None)
            continue
        vector = np.asarray(values, float)
        if s_shapes is not None and k < len(s_shapes) and s_shapes[k]:
            if vector.shape != (2 * sizes[k],) or not np.all(np.isfinite(vector)):
                return None
        elif vector.shape != (sizes[k],) or not np.all((vector >= 0) & (vector <= 1)):
            return None
        alphas.append(vector)
    return alphas


def split_betas(raw: list[tuple[int, int, float]], signs: list[np.ndarray],
                sizes: list[int]) -> dict[int, np.ndarray] | None:
    """{layer: β_j s_j} from (k, i, β) triples; None unless every β ≥ 0 is finite and on
    a split neuron."""
    betas: dict[int, np.ndarray] = {}
    for k, neuron, beta in raw:
        k, neuron = int(k), int(neuron)
        if not (0 <= k < len(sizes) and 0 <= neuron < sizes[k]) or not beta >= 0 or \
                not np.isfinite(beta) or not signs[k][neuron]:
            return None
        betas.setdefault(k, np.zeros(sizes[k]))[neuron] += beta * signs[k][neuron]
    return betas


def apply_tightened(net: StoredNetwork, box: Interval, bounds: list[Interval],
                    signs: list[np.ndarray], tightened: list[Any],
                    deadline: float = np.inf) -> list[Interval] | str:
    """Node bounds tightened by recorded single-neuron proofs (beta-CROWN's intermediate
    bounds, alpha-CROWN's on the whole box), layer by layer so that each uses the tightened
    layers below it; the error text when an entry is malformed, :data:`OUT_OF_TIME` when
    ``deadline`` passes first. An entry's α per layer below is as a leaf's
    (:func:`recorded_alphas`): lower slopes of a ReLU layer, the 2 n line slopes of a
    Sigmoid/Tanh layer (rigorous intercepts are derived for them on the node's bounds).

    The entries of one layer depend only on the layers below it, so they are re-derived
    together: one back-substitution of all their rows, each row with its own α and β
    (a root of ``mnist_relu_9_200`` records about 2,300 entries in 8 layers). Every row's
    value is a rigorous bound whatever the summation order of the stacked products."""
    if not tightened:
        return bounds
    sizes = net.hidden_sizes
    relu, s_shapes = _relu_layers(net), _s_shape_layers(net)
    by_layer: dict[int, list[tuple[int, int, list, dict[int, np.ndarray]]]] = {}
    for entry in tightened:  # every entry is validated before any is used
        k, neuron, side = int(entry.layer), int(entry.neuron), int(entry.side)
        if not (0 < k < len(sizes) and 0 <= neuron < sizes[k] and side in (1, -1)):
            return f"invalid tightened bound ({k}, {neuron}, {side})"
        alphas = recorded_alphas(entry.alphas, sizes[:k], s_shapes[:k])
        betas = split_betas(entry.betas, signs, sizes[:k])
        if alphas is None or betas is None:
            return (f"tightened bound ({k}, {neuron}): α must lie in [0, 1] (two finite "
                    f"slopes per neuron on a Sigmoid/Tanh layer) and β ≥ 0 on splits")
        if any(a is not None and not (r or shaped)
               for a, r, shaped in zip(alphas, relu, s_shapes, strict=False)):
            return (f"tightened bound ({k}, {neuron}): α on a layer that is not a ReLU or "
                    f"one Sigmoid/Tanh")
        by_layer.setdefault(k, []).append((neuron, side, alphas, betas))
    bounds = [(lo.copy(), hi.copy()) for lo, hi in bounds]
    for k in sorted(by_layer):
        if time.perf_counter() > deadline:
            return OUT_OF_TIME
        entries = by_layer[k]
        count = len(entries)
        base = [layer_relaxation(net, j, b) for j, b in enumerate(bounds[:k])]
        rows = np.zeros((count, sizes[k]))
        rows[np.arange(count), [e[0] for e in entries]] = [e[1] for e in entries]
        layers = sorted({j for e in entries for j in e[3]})
        betas = {j: np.stack([e[3].get(j, np.zeros(sizes[j])) for e in entries])
                 for j in layers}
        # the entries are the stack's leading axis: one row each, with its own α and β
        values = _back_substitute(net, rows[:, None, :], np.zeros((count, 1)), k,
                                  _with_alphas(base, _stacked_alphas(entries, base)),
                                  bounds[:k], box, betas)[:, 0]
        lower, upper = bounds[k]
        for (neuron, side, _, _), value in zip(entries, values, strict=True):
            if side > 0:
                lower[neuron] = max(lower[neuron], value)
            else:
                upper[neuron] = min(upper[neuron], -value)
        bounds[k] = (np.where(signs[k] > 0, np.maximum(lower, 0), lower),
                     np.where(signs[k] < 0, np.minimum(upper, 0), upper))
    return bounds


def _stacked_alphas(entries: list[tuple[int, int, list, dict]],
                    base: list[list[Any]]) -> list[np.ndarray | None]:
    """Per layer below, the entries' recorded α as one row each (nan, DeepPoly's lines,
    for an entry that records none there), or None when no entry records any."""
    stacked: list[np.ndarray | None] = []
    for j in range(len(base)):
        chosen = [e[2][j] if j < len(e[2]) else None for e in entries]
        if all(c is None for c in chosen):
            stacked.append(None)
            continue
        # α is only recorded on a layer of one ReLU (n slopes) or one S-shape (2 n)
        width = next(c for c in chosen if c is not None).shape
        stacked.append(np.stack([np.full(width, np.nan) if c is None else c for c in chosen]))
    return stacked


def input_halves(box: Interval, split: Any) -> tuple[Interval, Interval] | None:
    """The two halves x_d ≤ m and x_d ≥ m of a box (they cover it); None if malformed."""
    dimension, middle = int(split[0]), float(split[1])
    if not (0 <= dimension < box[0].size and box[0][dimension] <= middle <= box[1][dimension]):
        return None
    below, above = box[1].copy(), box[0].copy()
    below[dimension] = above[dimension] = middle
    return (box[0], below), (above, box[1])


def inherited_bounds(parent: list[Interval], signs: list[np.ndarray]) -> list[Interval]:
    """A node's bounds taken from its parent (valid on the smaller domain), clamped."""
    return [(np.where(s > 0, np.maximum(lo, 0), lo), np.where(s < 0, np.minimum(hi, 0), hi))
            for (lo, hi), s in zip(parent, signs, strict=True)]


def _derived_alone(box_half: bool, parent: list[Interval] | None, node: Any) -> bool:
    """Are a node's bounds :func:`node_bounds` of its own box (and its parent's bounds)
    alone — not the root's cached ones, not inherited — as :func:`derive_node_bounds`
    derives them? Such nodes can be derived in one stack."""
    return box_half or (parent is not None and not node.inherit)


def derive_node_bounds(net: StoredNetwork, box: Interval, signs: list[np.ndarray],
                       parent: list[Interval] | None, node: Any,
                       root_cache: dict[bytes, list[Interval]],
                       deadline: float = np.inf, box_half: bool = False
                       ) -> list[Interval] | str:
    """A tree node's bounds from its parent's (None: the root, whose bounds depend on the box
    only and are shared through ``root_cache``), then its recorded tightened bounds; a
    message instead when those are malformed. ``box_half``: the node is a half of its
    parent's box (an input split), and its bounds are derived on its own box alone, as the
    input-split search bounds each box (:func:`node_bounds` with ``interval_chain``; the
    parent's bounds are not intersected in — that changes the relaxations the search's
    proof was made with, and on ACAS Xu turned proved leaves into bounds of −6). The one
    rule the check and the search's leaf confirmation (:mod:`nobound.certify.leaf_confirm`)
    both follow."""
    if _derived_alone(box_half, parent, node):
        bounds = node_bounds(net, box, signs, None if box_half else parent,
                             interval_chain=box_half)
    elif parent is None:
        key = box[0].tobytes() + box[1].tobytes()
        if key not in root_cache:
            root_cache[key] = node_bounds(net, box, signs, None)
        bounds = root_cache[key]
        if node.tightened:
            # the problems of one box share one list of whole-box tightened bounds (the
            # certifier's): derived once; the cache holds the list, so its id stays its own
            shared = key + b"tightened" + id(node.tightened).to_bytes(8, "little")
            if shared not in root_cache:
                derived = apply_tightened(net, box, bounds, signs, node.tightened, deadline)
                if isinstance(derived, str):
                    return derived
                root_cache[shared] = (node.tightened, derived)
            return root_cache[shared][1]
    else:
        bounds = inherited_bounds(parent, signs)
    return apply_tightened(net, box, bounds, signs, node.tightened, deadline)


# Leaves checked together: at most this many, and fewer on wide networks, so that a
# stack's coefficient rows (two per neuron of a layer, per leaf) stay under STACK_NUMBERS.
MOST_STACKED = 256
STACK_NUMBERS = 2 ** 21


@dataclass
class _Leaf:
    """A proof leaf waiting for its check: the tree node and what its bounds derive from."""

    index: int
    node: Any
    signs: list[np.ndarray]
    parent: list[Interval] | None
    box: Interval
    box_half: bool


class _Pace:
    """How many leaves to check in one stack: as many as fit, but with a deadline no more
    than the last stack's time per leaf lets finish before it (one leaf until a stack has
    been timed) — so a check still stops about one stack's work after its deadline."""

    def __init__(self, net: StoredNetwork, deadline: float) -> None:
        widest = max(w.shape[0] * w.shape[1] for w in net.weights)
        self.most = 1 if not stackable(net) else \
            max(1, min(MOST_STACKED, STACK_NUMBERS // (2 * widest)))
        self.deadline = deadline
        self.per_leaf: float | None = None

    def size(self) -> int:
        if not np.isfinite(self.deadline):
            return self.most
        if self.per_leaf is None:
            return 1
        left = (self.deadline - time.perf_counter()) / max(self.per_leaf, 1e-12)
        return int(max(1, min(self.most, left)))

    def record(self, leaves: int, seconds: float) -> None:
        self.per_leaf = seconds / max(leaves, 1)


def stackable(net: StoredNetwork) -> bool:
    """Can nodes of ``net`` be bounded as one stack (every hidden layer one ReLU)?"""
    return all(_relu_layers(net))


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    return np.stack(arrays)


def _leaf_bounds(net: StoredNetwork, leaves: list[_Leaf],
                 root_cache: dict[bytes, list[Interval]], deadline: float
                 ) -> list[list[Interval] | str]:
    """Each leaf's :func:`derive_node_bounds`; those derived alone, one stack per kind
    (input-split halves; children of a ReLU split)."""
    derived: list[list[Interval] | str | None] = [None] * len(leaves)
    layers = range(net.num_hidden_layers)
    for half in (True, False):
        group = [i for i, leaf in enumerate(leaves) if leaf.box_half == half
                 and _derived_alone(leaf.box_half, leaf.parent, leaf.node)]
        if len(group) < 2 or not stackable(net):
            continue
        box = tuple(_stack([leaves[i].box[side] for i in group]) for side in (0, 1))
        signs = [_stack([leaves[i].signs[k] for i in group]) for k in layers]
        parent = None if half else [
            tuple(_stack([leaves[i].parent[k][side] for i in group]) for side in (0, 1))
            for k in layers]
        stacked = node_bounds(net, box, signs, parent, interval_chain=half)
        for j, i in enumerate(group):
            leaf = leaves[i]
            derived[i] = apply_tightened(net, leaf.box, [(lo[j], hi[j]) for lo, hi in stacked],
                                         leaf.signs, leaf.node.tightened, deadline)
    for i, leaf in enumerate(leaves):
        if derived[i] is None:
            derived[i] = derive_node_bounds(net, leaf.box, leaf.signs, leaf.parent, leaf.node,
                                            root_cache, deadline, leaf.box_half)
    return derived


@dataclass
class _Proved:
    """A leaf's parsed proof, ready for its bound."""

    position: int
    box: Interval
    bounds: list[Interval]
    weights: np.ndarray
    betas: dict[int, np.ndarray]
    alphas: list[np.ndarray | None]


def _proof_values(net: StoredNetwork, ready: list[_Proved], spec: np.ndarray,
                  offset: np.ndarray) -> list[float]:
    """:func:`leaf_value` of each leaf; on a stackable network, of all of them as one stack
    (each with its own box, bounds, row weights, α and β)."""
    if len(ready) < 2 or not stackable(net):
        return [leaf_value(net, r.box, r.bounds, spec, offset, r.weights, r.betas, r.alphas)
                for r in ready]
    sizes = net.hidden_sizes
    box = (_stack([r.box[0] for r in ready]), _stack([r.box[1] for r in ready]))
    bounds = [(_stack([r.bounds[k][0] for r in ready]), _stack([r.bounds[k][1] for r in ready]))
              for k in range(len(sizes))]
    betas = {k: _stack([r.betas.get(k, np.zeros(sizes[k])) for r in ready])
             for k in sorted({k for r in ready for k in r.betas})}
    alphas: list[np.ndarray | None] = []
    for k in range(max(len(r.alphas) for r in ready)):
        chosen = [r.alphas[k] if k < len(r.alphas) else None for r in ready]
        alphas.append(None if all(c is None for c in chosen) else _stack(
            [np.full(sizes[k], np.nan) if c is None else c for c in chosen]))
    recorded = np.array([any(a is not None for a in r.alphas) for r in ready])
    multiplied = np.array([bool(r.betas) for r in ready])
    values = leaf_values(net, box, bounds, spec, offset, _stack([r.weights for r in ready]),
                         betas or None, alphas, recorded, multiplied)
    return [float(v) for v in values]


def _check_leaves(net: StoredNetwork, leaves: list[_Leaf], spec: np.ndarray,
                  offset: np.ndarray, report: CheckReport, problem: int, reproduce: bool,
                  root_cache: dict[bytes, list[Interval]], deadline: float) -> bool:
    """Check proof leaves together (their messages in their order); False when the
    deadline passed inside (the report is then out of time)."""
    label = f"problem {problem}"
    sizes = net.hidden_sizes
    relu, s_shapes = _relu_layers(net), _s_shape_layers(net)
    derived = _leaf_bounds(net, leaves, root_cache, deadline)
    if any(bounds is OUT_OF_TIME for bounds in derived):
        report.out_of_time = True
        first = next(leaf for leaf, b in zip(leaves, derived, strict=True) if b is OUT_OF_TIME)
        report.errors.append(f"{label}: the check ran out of time at node {first.index}")
        return False
    messages: list[list[str]] = [[] for _ in leaves]
    ready: list[_Proved] = []
    for position, (leaf, bounds) in enumerate(zip(leaves, derived, strict=True)):
        where = f"{label} node {leaf.index}"
        if isinstance(bounds, str):
            messages[position].append(f"{where}: {bounds}")
            continue
        report.leaves += 1
        proof = leaf.node.proof
        weights = np.asarray(proof.row_weights, float)
        if weights.shape != offset.shape or not np.all(weights >= 0):
            messages[position].append(f"{where}: row weights must be ≥ 0, one per row")
            continue
        betas = split_betas(proof.betas, leaf.signs, sizes)
        if betas is None:
            messages[position].append(f"{where}: β must be ≥ 0 and belong to a split neuron")
            continue
        if any(np.any(lo > hi) for lo, hi in bounds):
            continue  # an empty domain has no unsafe point
        alphas = recorded_alphas(proof.alphas, sizes, s_shapes)
        if alphas is None:
            messages[position].append(f"{where}: α must be one number in [0, 1] per neuron "
                                      f"(two finite slopes on a Sigmoid/Tanh layer)")
            continue
        if any(a is not None and not (r or shaped)
               for a, r, shaped in zip(alphas, relu, s_shapes, strict=False)):
            messages[position].append(f"{where}: α is recorded for a layer that is not a ReLU "
                                      f"or one Sigmoid/Tanh")
            continue
        ready.append(_Proved(position, leaf.box, bounds, weights, betas, alphas))
    for proved, value in zip(ready, _proof_values(net, ready, spec, offset), strict=True):
        proof = leaves[proved.position].node.proof
        where = f"{label} node {leaves[proved.position].index}"
        if not value > 0:
            messages[proved.position].append(
                f"{where}: rigorous bound {value:.6g} does not prove the leaf")
        elif reproduce and proof.method in REPRODUCED_METHODS and \
                value < proof.bound - BOUND_TOLERANCE * max(1.0, abs(proof.bound)):
            messages[proved.position].append(f"{where}: stored bound {proof.bound:.9g} is not "
                                             f"implied (re-derived {value:.9g})")
    for leaf, own in zip(leaves, messages, strict=True):
        report.errors.extend(own)
        if own:
            report.refused.append((problem, leaf.index))
    return True


def _check_problem(net: StoredNetwork, problem: ProblemCertificate, report: CheckReport,
                   number: int, reproduce: bool, root_cache: dict[bytes, list[Interval]],
                   deadline: float = np.inf) -> None:
    label = f"problem {number}"
    box = (np.asarray(problem.lower, float).reshape(-1),
           np.asarray(problem.upper, float).reshape(-1))
    spec, offset = np.atleast_2d(np.asarray(problem.spec, float)), \
        np.asarray(problem.offset, float).reshape(-1)
    nodes = problem.nodes
    if np.any(box[0] > box[1]):
        return  # an empty box has no unsafe point
    if not (np.all(np.isfinite(box[0])) and np.all(np.isfinite(box[1]))
            and np.all(np.isfinite(spec)) and np.all(np.isfinite(offset))):
        report.errors.append(f"{label}: the box or the rows are not finite numbers")
        return
    sizes = net.hidden_sizes
    relu = _relu_layers(net)
    root_signs = [np.zeros(n, np.int8) for n in sizes]
    # (node, split signs, parent's bounds, the node's box: input splits narrow it, whether
    #  the node is a half of its parent's box)
    stack: list[tuple[int, list[np.ndarray], Any, Interval, bool]] = [
        (0, root_signs, None, box, False)]
    seen: set[int] = set()
    # proof leaves are checked in stacks (_check_leaves), as many as the pace allows
    pending: list[_Leaf] = []
    pace = _Pace(net, deadline)

    def flush() -> bool:
        if not pending:
            return True
        if time.perf_counter() > deadline:
            report.out_of_time = True
            report.errors.append(f"{label}: the check ran out of time after {report.nodes} "
                                 f"nodes")
            return False
        start = time.perf_counter()
        done = _check_leaves(net, pending, spec, offset, report, number, reproduce,
                             root_cache, deadline)
        pace.record(len(pending), time.perf_counter() - start)
        pending.clear()
        return done

    while stack:
        if time.perf_counter() > deadline:  # an unfinished check proves nothing
            report.out_of_time = True
            report.errors.append(f"{label}: the check ran out of time after {report.nodes} "
                                 f"nodes")
            return
        index, signs, parent, box, box_half = stack.pop()
        where = f"{label} node {index}"
        if not 0 <= index < len(nodes) or index in seen:
            report.errors.append(f"{where}: missing or reached twice (not a tree)")
            continue
        seen.add(index)
        report.nodes += 1
        node = nodes[index]
        if node.proof is not None:
            pending.append(_Leaf(index, node, signs, parent, box, box_half))
            if len(pending) >= pace.size() and not flush():
                return
            continue
        if node.input_split is not None:
            # its halves derive their bounds on their own boxes: its own are never used
            halves = input_halves(box, node.input_split)
            if node.children is None or len(node.children) != 2 or halves is None:
                report.errors.append(f"{where}: invalid input split {node.input_split}")
                continue
            for child, half in zip(node.children, halves, strict=True):
                stack.append((int(child), signs, None, half, True))
            continue
        bounds = derive_node_bounds(net, box, signs, parent, node, root_cache, deadline,
                                    box_half)
        if bounds is OUT_OF_TIME:
            report.out_of_time = True
            report.errors.append(f"{label}: the check ran out of time at node {index}")
            return
        if isinstance(bounds, str):
            report.errors.append(f"{where}: {bounds}")
            continue
        if node.split is None or node.children is None or len(node.children) != 2:
            report.errors.append(f"{where}: neither a proof nor a split into two")
            continue
        k, neuron = int(node.split[0]), int(node.split[1])
        if not (0 <= k < len(sizes) and 0 <= neuron < sizes[k]) or signs[k][neuron]:
            report.errors.append(f"{where}: invalid or repeated split {node.split}")
            continue
        if not relu[k]:
            report.errors.append(f"{where}: split {node.split} is not on a ReLU layer")
            continue
        for child, sign in zip(node.children, (1, -1), strict=True):
            child_signs = [s.copy() for s in signs]
            child_signs[k][neuron] = sign
            stack.append((int(child), child_signs, bounds, box, False))
    if not flush():
        return
    unreached = set(range(len(nodes))) - seen
    if unreached:
        report.errors.append(f"{label}: nodes {sorted(unreached)[:5]} are not in the tree")


def check_proofs(net: StoredNetwork, problems: list[ProblemCertificate],
                 reproduce: bool = True,
                 root_cache: dict[bytes, list[Interval]] | None = None,
                 deadline: float = np.inf) -> CheckReport:
    """Check the split trees of ``problems`` against the interval network ``net``.

    ``reproduce=False`` skips the comparison with the stored bounds (the self-check of
    the certifier: only the rigorous sign matters there). ``root_cache`` keeps the root
    bounds of each box between calls (the problems of one robustness sample share one).
    ``deadline`` (a ``time.perf_counter`` reading): the check stops before the first node
    it would begin after it, and the report is then invalid (``out_of_time``) — so the
    check ends at most one node's work after the deadline."""
    report = CheckReport(valid=False)
    root_cache = {} if root_cache is None else root_cache
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        for i, problem in enumerate(problems):
            _check_problem(net, problem, report, i, reproduce, root_cache, deadline)
            if report.out_of_time:
                break
    report.valid = not report.errors
    return report


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
    try:
        net = checked_network(model, certificate.input_shape)
    except TypeError as error:
        report.errors.append(f"no rigorous check for this network ({error})")
        return report
    return check_proofs(net, certificate.problems)
