"""beta-CROWN: split constraints inside the bound, for many sub-domains in one call.

A sub-domain D of the box fixes the signs s_j ∈ {+1, −1} of some hidden pre-activations:
D = {x ∈ [l₀, u₀] : s_j z_j(x) ≥ 0 for every split j}. On D every pre-activation has
bounds [l, u] (inherited from the parent and clamped by the splits), so each ReLU is
relaxed, as in DeepPoly, by  α z ≤ ReLU(z) ≤ s z + t  (s = u/(u − l), t = −s l,
α ∈ [0, 1] free for an unstable neuron; exact for a stable one). For multipliers β ≥ 0,

    c·f(x)  ≥  c·f(x) − Σ_j β_j s_j z_j(x)          on D (every s_j z_j(x) ≥ 0),

and the right-hand side is bounded below on D by back-substitution, the split term
adding −β_j s_j to the coefficient of z_j as it passes layer j (Wang et al., 2021):

    Λ_H = c;   for k = H … 1:  Λ̂ = Λ_k W_k  (coefficient of a_{k−1}),  const += Λ_k·b_k,
               Λ_{k−1} = Λ̂⁺ α_{k−1} + Λ̂⁻ s_{k−1} − β_{k−1} s_{k−1}^split,  const += Λ̂⁻·t_{k−1};
    bound = const + Λ_0·b_0 + (Λ_0 W_0)⁺ l₀ + (Λ_0 W_0)⁻ u₀.

Every step is valid on D for *any* α ∈ [0, 1] and *any* β ≥ 0, so the bound is sound
whatever the optimiser returns; α and β are only chosen to make it large, by projected
gradient ascent (Adam steps, then α clipped to [0, 1] and β to ≥ 0). The gradient is the
reverse of the loop above, written out in :func:`bound_and_gradient` (an exact
derivative of a piecewise-linear function; tested against finite differences).

Shapes: N sub-domains, K objective rows each, hidden widths n_j. α and β are (N, K, n_j)
— one slope and one multiplier per row, as each row's bound is a separate Lagrangian.
Arrays may be NumPy or CuPy (the module is taken from the data); the network's dense
weights are moved to it once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_array

from nobound.autodiff.ops._compiled import numba_kernels
from nobound.backend import get_array_module
from nobound.certify.derived import derived_once
from nobound.exact.dense import DenseNetwork

Array = Any

BETA_KERNELS = "nobound.certify._beta_numba"


@dataclass
class SplitDomains:
    """N sub-domains of one box: per hidden layer j, bounds (N, n_j) and signs (N, n_j)."""

    lower: list[Array]
    upper: list[Array]
    signs: list[Array]
    box_lower: Array   # (N, n₀) or (n₀,)
    box_upper: Array


@dataclass
class Multipliers:
    """α (N, K, n_j) in [0, 1] and β (N, K, n_j) ≥ 0 per hidden layer (β = 0 off splits)."""

    alpha: list[Array]
    beta: list[Array]

    def take(self, index: Array) -> Multipliers:
        return Multipliers([a[index].copy() for a in self.alpha],
                           [b[index].copy() for b in self.beta])


# A host weight matrix with at most this share of non-zeros is multiplied in CSR form: a
# conv layer unrolled into a dense matrix is mostly zeros (1.5–5.5 % non-zero on VNN-COMP's
# oval21 nets), and the dense products of those matrices are nearly all of the search's time.
SPARSE_DENSITY = 0.2


class Weight:
    """One layer's W (n_out, n_in) as the back-substitution multiplies it: rows times W
    and rows times Wᵀ, dense, or through CSR copies of W and Wᵀ for a host matrix sparse
    enough (:func:`sparse_copies`). The sparse products sum in another order than the dense
    ones: the bound stays a float64 search bound, re-checked with outward rounding before
    it proves anything."""

    def __init__(self, dense: Array) -> None:
        self.dense = dense
        self.shape = tuple(dense.shape)
        copies = sparse_copies(dense)
        self.sparse, self.sparse_transpose = copies if copies is not None else (None, None)

    def rows_times(self, rows: Array) -> Array:
        """rows (…, n_out) @ W → (…, n_in)."""
        if self.sparse is None:
            return rows @ self.dense
        return _sparse_rows(self.sparse_transpose, rows)

    def rows_times_transpose(self, rows: Array) -> Array:
        """rows (…, n_in) @ Wᵀ → (…, n_out)."""
        if self.sparse is None:
            return rows @ self.dense.T
        return _sparse_rows(self.sparse, rows)

    def transpose_times(self, columns: Array) -> Array:
        """Wᵀ @ columns: (n_out, …) → (n_in, …), the columns in the layout the CSR product
        reads and writes (no transposed copies)."""
        return _columns_product(self.dense.T, self.sparse_transpose, columns)

    def times(self, columns: Array) -> Array:
        """W @ columns: (n_in, …) → (n_out, …)."""
        return _columns_product(self.dense, self.sparse, columns)


def _columns_product(dense: Array, sparse: Any, columns: Array) -> Array:
    flat = columns.reshape(columns.shape[0], -1)
    if sparse is None:
        product = dense @ flat
    else:
        kernels = _compiled(flat) if flat.dtype == sparse.dtype else None
        if kernels is None:
            product = sparse @ flat
        else:  # SciPy's product of few columns pays a call per stored entry
            product = np.empty((sparse.shape[0], flat.shape[1]), flat.dtype)
            kernels.csr_times_into(sparse.indptr, sparse.indices, sparse.data,
                                   np.ascontiguousarray(flat), product)
    return product.reshape(product.shape[0], *columns.shape[1:])


def _sparse_rows(matrix: Any, rows: Array) -> Array:
    """rows (…, m) times the transpose of a CSR matrix with m columns: (matrix @ rowsᵀ)ᵀ."""
    flat = rows.reshape(-1, rows.shape[-1])
    product = matrix @ np.ascontiguousarray(flat.T)
    return np.ascontiguousarray(product.T).reshape(*rows.shape[:-1], matrix.shape[0])


def sparse_copies(matrix: Array) -> tuple[Any, Any] | None:
    """CSR copies of a NumPy matrix and of its transpose when at most ``SPARSE_DENSITY``
    of its entries are non-zero, else None (also for device arrays: they stay dense). Made
    once per matrix (:mod:`nobound.certify.derived`): a scan of the dense matrix, per
    network, not per bound."""
    if not isinstance(matrix, np.ndarray):
        return None
    return derived_once("sparse copies", matrix, _make_sparse_copies)


def _make_sparse_copies(matrix: np.ndarray) -> tuple[Any, Any] | None:
    if np.count_nonzero(matrix) > SPARSE_DENSITY * matrix.size:
        return None
    return csr_array(matrix), csr_array(matrix.T)


def layer_weights(network: DenseNetwork, xp: Any) -> tuple[list[Weight], list[Array]]:
    """The network's matrices as :class:`Weight` (dense, with CSR copies when sparse) and
    its biases, on the array module ``xp``."""
    return ([Weight(xp.asarray(w)) for w in network.weights],
            [xp.asarray(b) for b in network.biases])


def relaxation(lower: Array, upper: Array) -> tuple[Array, Array, Array]:
    """(unstable mask, upper slope s, upper intercept t) of ReLU on [l, u]."""
    xp = get_array_module(lower)
    unstable = (lower < 0) & (upper > 0)
    width = xp.where(unstable, upper - lower, 1.0)
    slope = xp.where(unstable, upper / width, (lower >= 0).astype(lower.dtype))
    intercept = xp.where(unstable, -slope * lower, 0.0)
    return unstable, slope, intercept


def deeppoly_alpha(lower: Array, upper: Array) -> Array:
    """DeepPoly's lower slope of an unstable ReLU on [l, u]: 1 where u > −l, else 0 (the
    line of the smaller area; a stable neuron's lower line is its upper one)."""
    return (upper > -lower).astype(lower.dtype)


def initial_multipliers(domains: SplitDomains, rows: int) -> Multipliers:
    """DeepPoly's slopes (:func:`deeppoly_alpha`) and β = 0."""
    xp = get_array_module(domains.lower[0])
    alpha, beta = [], []
    for lower, upper in zip(domains.lower, domains.upper, strict=True):
        start = deeppoly_alpha(lower, upper)
        alpha.append(xp.repeat(start[:, None, :], rows, axis=1))
        beta.append(xp.zeros((lower.shape[0], rows, lower.shape[1]), lower.dtype))
    return Multipliers(alpha, beta)


def neuron_major(values: Array) -> Array:
    """(N, K, n) → (n, N, K), contiguous: the layout the back-substitution works in, where
    a weight product reads and writes whole rows of n (:meth:`Weight.transpose_times`)."""
    xp = get_array_module(values)
    return xp.ascontiguousarray(xp.moveaxis(values, -1, 0))


def row_major(values: Array) -> Array:
    """(n, N, K) → (N, K, n), contiguous: the layout of :class:`Multipliers`."""
    xp = get_array_module(values)
    return xp.ascontiguousarray(xp.moveaxis(values, 0, -1))


@dataclass
class _Lines:
    """Each sub-domain's ReLU relaxation per hidden layer j, neuron-major (n_j, N, 1) so
    that it broadcasts against (n_j, N, K): derived once per optimisation, whose bounds do
    not change. A stable neuron's upper slope (1 active, 0 inactive) is its lower slope
    too; ``signs`` are the split signs (int8)."""

    unstable: list[Array]
    slope: list[Array]
    intercept: list[Array]
    signs: list[Array]
    box_lower: Array     # (n₀, N, 1), or (n₀, 1, 1) for a box shared by all
    box_upper: Array
    shared_box: bool

    def take(self, chosen: Array) -> _Lines:
        """The sub-domains ``chosen`` (a mask or positions along N)."""
        def pick(values: list[Array]) -> list[Array]:
            return [v[:, chosen] for v in values]

        def pick_box(box: Array) -> Array:
            return box if self.shared_box else box[:, chosen]

        return _Lines(pick(self.unstable), pick(self.slope),
                      pick(self.intercept), pick(self.signs), pick_box(self.box_lower),
                      pick_box(self.box_upper), self.shared_box)


def _compiled(*arrays: Array) -> Any:
    """The compiled loops (:mod:`nobound.certify._beta_numba`) when Numba is there and the
    arrays are host arrays of one float dtype, else None (the NumPy/CuPy passes)."""
    if not all(isinstance(a, np.ndarray) for a in arrays) or \
            arrays[0].dtype.type not in (np.float32, np.float64) or \
            any(a.dtype != arrays[0].dtype for a in arrays):
        return None
    return numba_kernels(BETA_KERNELS)


def _lines(domains: SplitDomains, dtype: Any) -> _Lines:
    xp = get_array_module(domains.lower[0])

    def column(values: Array) -> Array:
        return xp.ascontiguousarray(values.T)[:, :, None]

    kernels = _compiled(*domains.lower, *domains.upper) if \
        all(np.dtype(dtype) == lo.dtype for lo in domains.lower) else None
    unstable, slope, intercept, signs = [], [], [], []
    for lower, upper, sign in zip(domains.lower, domains.upper, domains.signs, strict=True):
        if kernels is not None:
            shape = (lower.shape[1], lower.shape[0], 1)
            made = [np.empty(shape, bool), np.empty(shape, dtype), np.empty(shape, dtype),
                    np.empty(shape, np.int8)]
            kernels.lines_into(np.ascontiguousarray(lower), np.ascontiguousarray(upper),
                               np.ascontiguousarray(sign), *(a[:, :, 0] for a in made))
            for kept, value in zip((unstable, slope, intercept, signs), made,
                                   strict=True):
                kept.append(value)
            continue
        mask, up_slope, up_intercept = relaxation(lower, upper)
        unstable.append(column(mask))
        slope.append(column(up_slope.astype(dtype, copy=False)))
        intercept.append(column(up_intercept.astype(dtype, copy=False)))
        signs.append(column(sign.astype(np.int8)))

    def box(values: Array) -> Array:
        return column(values) if values.ndim == 2 else values[:, None, None]

    return _Lines(unstable, slope, intercept, signs, box(domains.box_lower),
                  box(domains.box_upper), domains.box_lower.ndim == 1)


def bound_and_gradient(network: DenseNetwork, domains: SplitDomains, objective: Array,
                       offset: Array, multipliers: Multipliers, gradient: bool = True
                       ) -> tuple[Array, Multipliers | None]:
    """Lower bounds (N, K) of objective·f + offset on each sub-domain, and their gradient
    w.r.t. α and β (module docstring). ``objective`` is (N, K, outputs)."""
    bound, _, grads = _back_substitute(
        network, _lines(domains, objective.dtype), neuron_major(objective), offset,
        [neuron_major(a) for a in multipliers.alpha],
        [neuron_major(b) for b in multipliers.beta], gradient)
    if grads is None:
        return bound, None
    return bound, Multipliers([row_major(g) for g in grads[0]],
                              [row_major(g) for g in grads[1]])


def bound_children(network: DenseNetwork, domains: SplitDomains, objective: Array,
                   offset: Array, parents: Multipliers, owners: Array) -> Array:
    """:func:`bound_and_gradient`'s bounds (C, K), without gradient, of C children each
    warm-started from its parent's multipliers (``owners`` (C,): positions in ``parents``):
    the parents' are made neuron-major once and gathered, instead of the children's."""
    dtype = objective.dtype
    xp = get_array_module(objective)

    def gathered(values: list[Array]) -> list[Array]:
        return [xp.take(neuron_major(v.astype(dtype, copy=False)), owners, axis=1)
                for v in values]

    return _back_substitute(network, _lines(domains, dtype), neuron_major(objective), offset,
                            gathered(parents.alpha), gathered(parents.beta), False)[0]


def input_coefficients(network: DenseNetwork, domains: SplitDomains, objective: Array,
                       offset: Array, multipliers: Multipliers) -> Array:
    """(N, K, n₀): the coefficient of x in each row's linear lower bound (its minimiser
    over the box is the corner picked by the signs: a counterexample candidate)."""
    first = _back_substitute(network, _lines(domains, objective.dtype),
                             neuron_major(objective), offset,
                             [neuron_major(a) for a in multipliers.alpha],
                             [neuron_major(b) for b in multipliers.beta], False)[1]
    return row_major(first)


def _back_substitute(network: DenseNetwork, lines: _Lines, objective: Array, offset: Array,
                     alpha: list[Array], beta: list[Array], gradient: bool
                     ) -> tuple[Array, Array, tuple[list[Array], list[Array]] | None]:
    """The module docstring's loop and its reverse, every array neuron-major: objective
    (outputs, N, K), α and β (n_j, N, K); returns the bound (N, K), the coefficient of x
    (n₀, N, K) and, with ``gradient``, the gradients (α, β) in the same layout."""
    xp = get_array_module(objective)
    weights, biases = layer_weights(network, xp)
    kernels = _compiled(objective, *alpha, *beta, *lines.slope)
    if kernels is not None:
        return _back_substitute_compiled(kernels, weights, biases, lines, objective, offset,
                                         alpha, beta, gradient)
    hidden = len(weights) - 1
    lower_slopes = [xp.where(unstable, a, slope) for unstable, a, slope
                    in zip(lines.unstable, alpha, lines.slope, strict=True)]
    coefficient = objective                           # Λ on z_H
    constant = xp.asarray(offset, objective.dtype)
    through: list[Array] = [None] * (hidden + 1)      # Λ̂ = Λ_k W_k, coefficient of a_{k−1}
    for k in range(hidden, -1, -1):
        constant = constant + xp.tensordot(biases[k], coefficient, axes=(0, 0))
        through[k] = weights[k].transpose_times(coefficient)
        if k == 0:
            break
        j = k - 1
        positive, negative = xp.maximum(through[k], 0), xp.minimum(through[k], 0)
        constant = constant + (negative * lines.intercept[j]).sum(axis=0)
        coefficient = positive * lower_slopes[j] + negative * lines.slope[j] \
            - beta[j] * lines.signs[j]
    first = through[0]
    bound = constant + (xp.maximum(first, 0) * lines.box_lower).sum(axis=0) \
        + (xp.minimum(first, 0) * lines.box_upper).sum(axis=0)
    if not gradient:
        return bound, first, None
    # reverse pass: g = d(Σ bound)/d(coefficient of z_j), walking up from the input
    grad_through = xp.where(first > 0, lines.box_lower, lines.box_upper)
    grad_alpha, grad_beta = [], []
    for j in range(hidden):
        grad_coefficient = weights[j].times(grad_through) + biases[j][:, None, None]
        above = through[j + 1]
        grad_alpha.append(xp.where(lines.unstable[j], grad_coefficient
                                   * xp.maximum(above, 0), 0.0))
        grad_beta.append(-grad_coefficient * lines.signs[j])
        grad_through = xp.where(above > 0, grad_coefficient * lower_slopes[j],
                                grad_coefficient * lines.slope[j] + lines.intercept[j])
    return bound, first, (grad_alpha, grad_beta)


def _back_substitute_compiled(kernels: Any, weights: list[Weight], biases: list[Array],
                              lines: _Lines, objective: Array, offset: Array,
                              alpha: list[Array], beta: list[Array], gradient: bool
                              ) -> tuple[Array, Array, tuple[list[Array], list[Array]] | None]:
    """:func:`_back_substitute` with each ReLU step, the input layer and each reverse step
    in one compiled pass (the same arithmetic per element; the sums in neuron order)."""
    hidden = len(weights) - 1
    count, rows = objective.shape[1:]
    dtype = objective.dtype
    coefficient = objective
    constant = np.asarray(offset, dtype)
    through: list[Array] = [None] * (hidden + 1)
    for k in range(hidden, -1, -1):
        constant = constant + np.tensordot(biases[k], coefficient, axes=(0, 0))
        through[k] = np.ascontiguousarray(weights[k].transpose_times(coefficient))
        if k == 0:
            break
        j = k - 1
        coefficient = np.empty_like(through[k])
        total = np.zeros((count, rows), dtype)
        kernels.relu_step_into(through[k], alpha[j], beta[j], lines.unstable[j][:, :, 0],
                               lines.slope[j][:, :, 0], lines.intercept[j][:, :, 0],
                               lines.signs[j][:, :, 0], coefficient, total)
        constant = constant + total
    first = through[0]
    below, above = np.zeros((count, rows), dtype), np.zeros((count, rows), dtype)
    grad_through = np.empty_like(first) if gradient else first
    kernels.box_step_into(first, np.ascontiguousarray(lines.box_lower[:, :, 0]),
                          np.ascontiguousarray(lines.box_upper[:, :, 0]), below, above,
                          grad_through, gradient)
    bound = constant + below + above
    if not gradient:
        return bound, first, None
    grad_alpha, grad_beta = [], []
    for j in range(hidden):
        product = np.ascontiguousarray(weights[j].times(grad_through))
        grad_alpha.append(np.empty_like(product))
        grad_beta.append(np.empty_like(product))
        grad_through = np.empty_like(product)
        kernels.relu_gradient_into(product, np.ascontiguousarray(biases[j], dtype),
                                   through[j + 1], alpha[j],
                                   lines.unstable[j][:, :, 0], lines.slope[j][:, :, 0],
                                   lines.intercept[j][:, :, 0], lines.signs[j][:, :, 0],
                                   grad_alpha[j], grad_beta[j], grad_through)
    return bound, first, (grad_alpha, grad_beta)


def optimise(network: DenseNetwork, domains: SplitDomains, objective: Array, offset: Array,
             start: Multipliers | None = None, steps: int = 20, learning_rate: float = 0.1,
             optimise_alpha: bool = True, deadline: float = math.inf,
             settled_above: float | None = None) -> tuple[Array, Multipliers]:
    """Projected Adam ascent on (α, β) from ``start`` (default: DeepPoly's α, β = 0).

    Returns the best bound found per sub-domain and row (every iterate is sound, so the
    elementwise maximum over iterates is too) and the multipliers that gave it. After
    ``deadline`` (a ``time.perf_counter`` reading) no further step is taken: the best of
    the iterates so far is returned (at least the starting point's bound). With
    ``settled_above``, a sub-domain whose best row is above it is settled (for branch and
    bound: proved) and leaves the optimisation — the other sub-domains' steps are the same,
    the batch only shrinks (branch and bound's warm-started children are mostly proved at
    their first iterate or not within the round; docs/certifier.md).
    """
    xp = get_array_module(objective)
    rows = objective.shape[1]
    current = start if start is not None else initial_multipliers(domains, rows)
    if steps == 0 and start is None:  # DeepPoly's bound: nothing to project or remember
        bound, _ = bound_and_gradient(network, domains, objective, offset, current,
                                      gradient=False)
        return bound, current
    if not optimise_alpha:  # DeepPoly's slopes on *these* bounds (what a checker re-derives)
        current = Multipliers(initial_multipliers(domains, rows).alpha, current.beta)
    # the iterates live neuron-major (n_j, N, K) until they are returned
    lines = _lines(domains, objective.dtype)
    split = [s != 0 for s in lines.signs]
    alpha = [xp.clip(neuron_major(a), 0.0, 1.0) for a in current.alpha]
    beta = [xp.where(m, xp.maximum(neuron_major(b), 0.0), 0.0)
            for b, m in zip(current.beta, split, strict=True)]
    best_bound = None
    best = [p.copy() for p in alpha + beta]
    first_moment = [xp.zeros_like(p) for p in alpha + beta]
    second_moment = [xp.zeros_like(p) for p in alpha + beta]
    # the sub-domains still optimised (positions in the batch; None: all of them) and
    # their part of the problem
    positions = None
    part_lines, part_objective, part_offset = lines, neuron_major(objective), offset
    for step in range(steps + 1):
        bound, _, grads = _back_substitute(network, part_lines, part_objective, part_offset,
                                           alpha, beta, gradient=step < steps)
        # the bound of the current iterate: keep it where it beats the best so far
        if best_bound is None:
            best_bound = bound
        else:
            kept_bound = best_bound if positions is None else best_bound[positions]
            improved = bound > kept_bound
            updated = xp.where(improved, bound, kept_bound)
            if positions is None:
                best_bound = updated
            else:
                best_bound[positions] = updated
            for kept, now in zip(best, alpha + beta, strict=True):
                if positions is None:
                    kept[...] = xp.where(improved[None], now, kept)
                else:
                    kept[:, positions] = xp.where(improved[None], now, kept[:, positions])
        if step == steps or time.perf_counter() > deadline:
            break
        if settled_above is not None:
            own = best_bound if positions is None else best_bound[positions]
            going = own.max(axis=1) <= settled_above
            if not bool(going.all()):
                if not bool(going.any()):
                    break
                positions = xp.flatnonzero(going) if positions is None \
                    else positions[going]
                part_lines, part_objective, part_offset = (
                    part_lines.take(going), part_objective[:, going], part_offset[going])
                split = [m[:, going] for m in split]
                alpha = [a[:, going] for a in alpha]
                beta = [b[:, going] for b in beta]
                grads = ([g[:, going] for g in grads[0]], [g[:, going] for g in grads[1]])
                first_moment = [m[:, going] for m in first_moment]
                second_moment = [v[:, going] for v in second_moment]
        kernels = _compiled(*alpha, *beta, *grads[0], *grads[1])
        if kernels is not None:  # the step and the projection in one pass per array
            first_correction, second_correction = 1 - 0.9 ** (step + 1), 1 - 0.999 ** (step + 1)
            for index, (p, g, m, v) in enumerate(zip(alpha + beta, grads[0] + grads[1],
                                                     first_moment, second_moment,
                                                     strict=True)):
                is_beta = index >= len(alpha)
                if is_beta or optimise_alpha:
                    kernels.adam_step_into(p, g, m, v, learning_rate, first_correction,
                                           second_correction,
                                           split[index % len(alpha)][:, :, 0], is_beta)
            continue
        moving = [optimise_alpha] * len(alpha) + [True] * len(beta)
        for p, g, m, v, moves in zip(alpha + beta, grads[0] + grads[1], first_moment,
                                     second_moment, moving, strict=True):
            if not moves:
                continue
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p += learning_rate * (m / (1 - 0.9 ** (step + 1))) / (
                xp.sqrt(v / (1 - 0.999 ** (step + 1))) + 1e-8)
        for a in alpha:
            xp.clip(a, 0.0, 1.0, out=a)
        for b, m in zip(beta, split, strict=True):
            b[...] = xp.where(m, xp.maximum(b, 0.0), 0.0)
    layers = len(alpha)
    return best_bound, Multipliers([row_major(p) for p in best[:layers]],
                                   [row_major(p) for p in best[layers:]])
