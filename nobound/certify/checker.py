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
    down,
    gamma_factor,
    lower_dot,
    matmul_error,
    product_error,
    up,
    upper_product,
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
                   radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fl(Λ W), E') with |Λ* W* − fl(Λ W)| ≤ E' for |Λ* − Λ| ≤ E, |W* − W| ≤ R."""
    n = weight.shape[0]
    product = rows @ weight
    spread = up(gamma_factor(n) * np.abs(rows))
    if error is not None:
        spread = up(spread + error)
    new_error = up(upper_product(spread, np.abs(weight)) + up(2.0 * n * SMALLEST_SUBNORMAL))
    if np.any(radius):
        reach = np.abs(rows) if error is None else up(np.abs(rows) + error)
        new_error = up(new_error + upper_product(reach, radius))
    return product, new_error


def _bias_term(rows: np.ndarray, error: np.ndarray | None, bias: np.ndarray,
               radius: np.ndarray) -> np.ndarray:
    """A lower bound of Λ* · b* (real), per row."""
    value = lower_dot(rows, bias)
    penalty = upper_product(np.abs(rows), radius) if np.any(radius) else 0.0
    if error is not None:
        penalty = up(penalty + upper_product(error, up(np.abs(bias) + radius)))
    return down(value - penalty)


def _back_substitute(net: StoredNetwork, rows: np.ndarray, constant: np.ndarray, top: int,
                     relaxations: list[list[Any]], bounds: list[Interval],
                     box: Interval, betas: dict[int, np.ndarray] | None = None,
                     error: np.ndarray | None = None) -> np.ndarray:
    """A rigorous lower bound of rows* · z_top + constant over the node's domain, where the
    real coefficient rows* is within ``error`` of ``rows`` (exact when None)."""
    for k in range(top, -1, -1):
        constant = down(constant + _bias_term(rows, error, net.biases[k], net.bias_radii[k]))
        rows, error = _through_stage(rows, error, net.weights[k], net.weight_radii[k])
        if k == 0:
            break
        for relaxed in reversed(relaxations[k - 1]):  # the layer's operations, last first
            # rows* a = rows a + (rows* − rows) a ≥ rows a − E |a|, |a| from a's interval
            constant = down(constant - upper_product(error, _magnitude(relaxed.outputs)))
            rows, error, added = relaxed.back(rows)
            constant = down(constant + added)
        if betas and (k - 1) in betas:
            rows = rows - betas[k - 1]
            error = up(error + product_error(rows))
        constant = down(constant - upper_product(error, _magnitude(bounds[k - 1])))
        error = None
    lower, upper = box
    value = down(lower_dot(np.maximum(rows, 0), lower) + lower_dot(np.minimum(rows, 0), upper))
    value = down(value - upper_product(error, _magnitude(box)))
    return down(constant + value)


def _interval_lower(weight: np.ndarray, bias: np.ndarray, radius: np.ndarray,
                    bias_radius: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A lower bound of W* a + b* over low ≤ a ≤ high (real arithmetic)."""
    value = down(lower_dot(np.maximum(weight, 0), low) + lower_dot(np.minimum(weight, 0), high))
    value = down(value + down(bias - bias_radius))
    if np.any(radius):
        value = down(value - upper_product(radius, _magnitude((low, high))))
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
    """Rigorous pre-activation bounds of every hidden layer on one node's domain.

    As the certifier does: interval bounds first (from the box for the first layer, where
    they are what back-substitution gives; from the layer before otherwise), intersected
    with the parent's bounds and clamped by the splits; then a back-substitution row only
    for the neurons still unstable (a stable neuron's relaxation is exact whatever its
    bounds), intersected again.

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
        unstable = np.flatnonzero((lower < 0) & (upper > 0) if relu[k] else lower < upper)
        if k and unstable.size:
            rows = np.zeros((unstable.size, net.weights[k].shape[0]))  # unit rows e_i,
            rows[np.arange(unstable.size), unstable] = 1.0  # without an n × n identity
            both = _back_substitute(net, np.concatenate([rows, -rows]),
                                    np.zeros(2 * unstable.size), k, relaxations, bounds, box)
            lower[unstable] = np.maximum(lower[unstable], both[:unstable.size])
            upper[unstable] = np.minimum(upper[unstable], -both[unstable.size:])
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
    rows, row_error = matmul_error(weights[None], spec)
    constant = np.atleast_1d(lower_dot(weights, offset))
    own = [layer_relaxation(net, k, b) for k, b in enumerate(bounds)]
    value = float(_back_substitute(net, rows, constant, net.num_hidden_layers,
                                   _with_alphas(own, alphas), bounds, box, betas,
                                   row_error)[0])
    relu = _relu_layers(net)
    if not value > 0 and not any(a is not None for a in alphas or []) and any(relu):
        # the area heuristic α = 1[u > −l] is only a heuristic: with the checker's own (often
        # tighter) bounds it can choose worse lower lines than the certifier did; any
        # α ∈ [0, 1] is sound, so the usual other choices are tried too
        def each(slopes: Any) -> list[np.ndarray | None]:
            return [slopes(r[0]) if is_relu_layer else None
                    for r, is_relu_layer in zip(own, relu, strict=True)]

        for choice in (each(lambda r: np.zeros_like(r.lower_slope)),
                       each(lambda r: np.ones_like(r.lower_slope)),
                       each(lambda r: r.upper_slope)):
            value = max(value, float(_back_substitute(
                net, rows, constant, net.num_hidden_layers, _with_alphas(own, choice), bounds,
                box, betas, row_error)[0]))
            if value > 0:
                break
    if bounds and not betas:  # IBP-style (a proof with split multipliers is held to them):
        # on IBP-trained networks DeepPoly can be the looser of the two
        value = max(value, float(_interval_value(net, rows, row_error, constant, bounds)[0]))
    return value


def _interval_value(net: StoredNetwork, rows: np.ndarray, error: np.ndarray,
                    constant: np.ndarray, bounds: list[Interval]) -> np.ndarray:
    """A rigorous lower bound of rows* · z_L + constant from the interval of the last
    hidden layer's activations alone (valid for Σλ_i r_i, hence for the Lagrangian's
    purpose: where it is > 0 no point of the leaf is unsafe)."""
    top = net.num_hidden_layers
    constant = down(constant + _bias_term(rows, error, net.biases[top], net.bias_radii[top]))
    rows, error = _through_stage(rows, error, net.weights[top], net.weight_radii[top])
    low, high = activation_interval(net, top - 1, bounds[-1])
    value = down(lower_dot(np.maximum(rows, 0), low) + lower_dot(np.minimum(rows, 0), high))
    return down(constant + down(value - upper_product(error, _magnitude((low, high)))))


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
        if recorded is not None and len(relaxed) == 1 and isinstance(relaxed[0], Lines) \
                and relaxed[0].relu:
            relaxed = [relaxed[0].with_lower_slopes(recorded)]
        out.append(relaxed)
    return out


def recorded_alphas(raw: list[list[float]], sizes: list[int]) -> list[np.ndarray | None] | None:
    """Per-layer α vectors from a certificate ([] = DeepPoly's); None when malformed."""
    alphas: list[np.ndarray | None] = []
    for k, values in enumerate(raw):
        if k >= len(sizes):
            return None
        if len(values) == 0:
            alphas.append(None)
            continue
        vector = np.asarray(values, float)
        if vector.shape != (sizes[k],) or not np.all((vector >= 0) & (vector <= 1)):
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
    bounds), layer by layer so that each uses the tightened layers below it; the error
    text when an entry is malformed, :data:`OUT_OF_TIME` when ``deadline`` passes first.

    The entries of one layer depend only on the layers below it, so they are re-derived
    together: one back-substitution of all their rows, each row with its own α and β
    (a root of ``mnist_relu_9_200`` records about 2,300 entries in 8 layers). Every row's
    value is a rigorous bound whatever the summation order of the stacked products."""
    if not tightened:
        return bounds
    sizes = net.hidden_sizes
    relu = _relu_layers(net)
    by_layer: dict[int, list[tuple[int, int, list, dict[int, np.ndarray]]]] = {}
    for entry in tightened:  # every entry is validated before any is used
        k, neuron, side = int(entry.layer), int(entry.neuron), int(entry.side)
        if not (0 < k < len(sizes) and 0 <= neuron < sizes[k] and side in (1, -1)):
            return f"invalid tightened bound ({k}, {neuron}, {side})"
        alphas = recorded_alphas(entry.alphas, sizes[:k])
        betas = split_betas(entry.betas, signs, sizes[:k])
        if alphas is None or betas is None:
            return f"tightened bound ({k}, {neuron}): α must lie in [0, 1] and β ≥ 0 on splits"
        if any(a is not None and not r for a, r in zip(alphas, relu, strict=False)):
            return f"tightened bound ({k}, {neuron}): α on a layer that is not a ReLU"
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
        values = _back_substitute(net, rows, np.zeros(count), k,
                                  _with_alphas(base, _stacked_alphas(entries, base)),
                                  bounds[:k], box, betas)
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
    """Per layer below, the entries' recorded α as one row each (DeepPoly's slopes for an
    entry that records none there), or None when no entry records any."""
    stacked: list[np.ndarray | None] = []
    for j, relaxed in enumerate(base):
        chosen = [e[2][j] if j < len(e[2]) else None for e in entries]
        if all(c is None for c in chosen):
            stacked.append(None)
            continue
        default = relaxed[0].lower_slope  # α is only recorded on one-ReLU layers
        stacked.append(np.stack([default if c is None else c for c in chosen]))
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
    if box_half:
        bounds = node_bounds(net, box, signs, None, interval_chain=True)
    elif parent is None:
        key = box[0].tobytes() + box[1].tobytes()
        if key not in root_cache:
            root_cache[key] = node_bounds(net, box, signs, None)
        bounds = root_cache[key]
    elif node.inherit:
        bounds = inherited_bounds(parent, signs)
    else:
        bounds = node_bounds(net, box, signs, parent)
    return apply_tightened(net, box, bounds, signs, node.tightened, deadline)


def _check_problem(net: StoredNetwork, problem: ProblemCertificate, report: CheckReport,
                   label: str, reproduce: bool, root_cache: dict[bytes, list[Interval]],
                   deadline: float = np.inf) -> None:
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
        if node.proof is None and node.input_split is not None:
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
        empty = any(np.any(lo > hi) for lo, hi in bounds)
        if node.proof is None:
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
            continue
        report.leaves += 1
        proof = node.proof
        weights = np.asarray(proof.row_weights, float)
        if weights.shape != offset.shape or not np.all(weights >= 0):
            report.errors.append(f"{where}: row weights must be ≥ 0, one per row")
            continue
        betas = split_betas(proof.betas, signs, sizes)
        if betas is None:
            report.errors.append(f"{where}: β must be ≥ 0 and belong to a split neuron")
            continue
        if empty:
            continue
        alphas = recorded_alphas(proof.alphas, sizes)
        if alphas is None:
            report.errors.append(f"{where}: α must be one number in [0, 1] per neuron")
            continue
        if any(a is not None and not r for a, r in zip(alphas, relu, strict=False)):
            report.errors.append(f"{where}: α is recorded for a layer that is not a ReLU")
            continue
        value = leaf_value(net, box, bounds, spec, offset, weights, betas, alphas)
        if not value > 0:
            report.errors.append(f"{where}: rigorous bound {value:.6g} does not prove the leaf")
        elif reproduce and proof.method in REPRODUCED_METHODS and \
                value < proof.bound - BOUND_TOLERANCE * max(1.0, abs(proof.bound)):
            report.errors.append(f"{where}: stored bound {proof.bound:.9g} is not implied "
                                 f"(re-derived {value:.9g})")
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
            _check_problem(net, problem, report, f"problem {i}", reproduce, root_cache,
                           deadline)
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
